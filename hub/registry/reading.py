"""Reading the registry: names, versions, aliases, manifests, and what a reference points to."""
from __future__ import annotations

import contextlib
import json
import logging

from schemas.errors import (
    AliasNotFound,
    IntegrityError,
    InvalidManifest,
    ModelNotFound,
    ObjectNotFound,
    VersionNotFound,
)
from schemas.manifest import load_manifest, namespace_of
from storage import ObjectStore

from ..refs import Reference, check_name, check_version, is_version_text, parse_reference
from .files import parallel_map
from .layout import alias_key, all_model_keys, manifest_key, model_keys
from .safety import safety_state

log = logging.getLogger(__name__)


class Reading:
    store: ObjectStore

    def check(self) -> None:
        """Raise unless the store answers (for readiness probes): one HEAD or stat. The key need
        not exist; an answer either way is what counts."""
        self.store.exists("health/probe")

    def model_names(self, namespace: str | None = None) -> list[str]:
        """Every model with a published version (of one namespace, if given)."""
        names = set()
        for name, key in all_model_keys(self.store):
            stem = key.rsplit("/", 1)[-1].removesuffix(".json")
            if is_version_text(stem) and key == manifest_key(name, int(stem)):
                names.add(name)
        if namespace is not None:
            names = {n for n in names if namespace_of(n) == namespace}
        return sorted(names)

    def versions(self, name: str) -> list[int]:
        return model_keys(self.store, check_name(name)).versions

    def manifest(self, name: str, version: int) -> dict:
        """The manifest of version `version` of `name`, validated and checked to describe it."""
        check_name(name)
        check_version(version)
        try:
            data = self.store.get_bytes(manifest_key(name, version))
        except ObjectNotFound:
            if not self.versions(name):
                raise ModelNotFound(f"model {name!r} not found") from None
            raise VersionNotFound(f"model {name!r} has no version {version}") from None
        where = f"manifest of {name}/{version}"
        try:
            manifest = load_manifest(json.loads(data), where)
        except json.JSONDecodeError as e:
            raise IntegrityError(f"{where} is not valid JSON: {e}") from e
        if manifest["name"] != name or manifest["version"] != version:
            raise IntegrityError(f"{where} describes {manifest['name']}/{manifest['version']}")
        return manifest

    def aliases(self, name: str) -> dict[str, int]:
        check_name(name)
        found = {}
        for alias in model_keys(self.store, name).aliases:
            with contextlib.suppress(ObjectNotFound):
                found[alias] = self.store.get_json(alias_key(name, alias))["version"]
        return found

    def get(self, ref: str | Reference) -> dict:
        """The manifest a reference points to now (one manifest read; an alias costs one more)."""
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        if ref.version is not None:
            return self.manifest(ref.name, ref.version)
        if ref.alias is not None:
            try:
                version = self.store.get_json(alias_key(ref.name, ref.alias))["version"]
            except ObjectNotFound:
                if not self.versions(ref.name):
                    raise ModelNotFound(f"model {ref.name!r} not found") from None
                raise AliasNotFound(f"model {ref.name!r} has no alias {ref.alias!r}") from None
            try:
                return self.manifest(ref.name, version)
            except VersionNotFound:
                raise VersionNotFound(
                    f"alias {ref} points to version {version}, which was deleted") from None
        versions = self.versions(ref.name)
        if not versions:
            raise ModelNotFound(f"model {ref.name!r} not found")
        return self.manifest(ref.name, versions[-1])

    def resolve(self, ref: str | Reference) -> tuple[str, int]:
        """(name, version) that a reference points to now."""
        manifest = self.get(ref)
        return manifest["name"], manifest["version"]

    def list_models(self, query: str | None = None) -> list[dict]:
        """One summary per model (from its latest manifest); `query` matches name, description
        and tags, case-insensitively."""
        def summary(name: str) -> dict | None:
            keys = model_keys(self.store, name)
            if not keys.versions:
                return None
            try:
                latest = self.manifest(name, keys.versions[-1])
            except (VersionNotFound, InvalidManifest, IntegrityError) as e:
                # Deleted since the listing, or damaged: one model must not break the list.
                log.warning("leaving %s out of the model list: %s", name, e)
                return None
            return {
                "name": name,
                "latest": keys.versions[-1],
                "versions": keys.versions,
                "aliases": keys.aliases,
                "description": latest["description"],
                "tags": latest["tags"],
                "license": latest["license"],
                "updated": latest["created"],
                "safety": safety_state(self.safety(latest)),
            }

        summaries = [s for s in parallel_map(summary, self.model_names()) if s]
        if query:
            q = query.lower()
            summaries = [s for s in summaries if q in s["name"] or q in s["description"].lower()
                         or any(q in f"{k}={v}".lower() for k, v in s["tags"].items())]
        return summaries
