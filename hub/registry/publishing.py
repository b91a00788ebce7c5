"""Publishing: the graph scanned first, then the files, each under its sha256, then the
manifest, last and create-only.

A graph the safety scan refuses is not stored at all, unless an admin allowed exactly the ops it
was refused for (`AllowOps`); the verdict, and any allowance, go into the manifest. A crash at any
point leaves no visible half version, and two publishers racing for version n cannot both win:
the loser takes n+1.
"""
from __future__ import annotations

import contextlib
import random
import tempfile
import time
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from schemas.errors import (
    ConcurrentModification,
    InvalidModel,
    ObjectExists,
    ObjectNotFound,
    UnsafeModel,
)
from schemas.manifest import MANIFEST_SCHEMA_VERSION, dump_manifest, load_manifest
from storage import ObjectStore

from ..refs import check_alias, check_name
from storage.hashing import sha256_file

from ..savedmodel import read_saved_model_info
from ..savedmodel.scan import Verdict, scan_saved_model
from .archive import safe_extract, saved_model_root
from .files import empty_folders, parallel_map, scan_folder
from .layout import blob_key, json_bytes, manifest_key, model_keys

#: Publishers of one name racing for version numbers retry this often before giving up.
PUBLISH_ATTEMPTS = 200

Progress = Callable[[int], None]


@dataclass(frozen=True)
class AllowOps:
    """An admin's decision to publish a graph although the scan refuses these ops. `by` names
    who decided (never a token); `sign` signs the allowance record with the server's secret, so
    that serving can tell a genuine allowance from one written into the store."""

    ops: tuple[str, ...]
    by: str
    sign: Callable[[dict], str]


def safety_record(verdict: Verdict, root: Path, allow: AllowOps | None) -> dict:
    """The manifest's `safety`: the verdict, and the allowance if one was needed and given.
    Raises UnsafeModel if the graph is refused and no allowance covers every refused op."""
    record = {**verdict.to_record(), "scanned": datetime.now(timezone.utc).isoformat(),
              "allowance": None}
    if verdict.safe:
        return record
    uncovered = verdict.refused_beyond(allow.ops if allow else ())
    if uncovered:
        hint = ("; an admin can allow named ops for one model with --allow-ops" if allow is None
                else f"; the allowance covers {', '.join(allow.ops)} but not these")
        refused = Verdict(tuple(uncovered), verdict.allowlist)
        raise UnsafeModel(f"the model's graph can reach outside the model, so it was not "
                          f"published: {refused.summary()}{hint}")
    allowance = {"ops": sorted(set(allow.ops)), "by": allow.by,
                 "at": datetime.now(timezone.utc).isoformat(),
                 "graph_sha256": sha256_file(root / "saved_model.pb")}
    record["allowance"] = {**allowance, "signature": allow.sign(allowance)}
    return record


class Publishing:
    store: ObjectStore

    def publish(self, source: str | Path, name: str, **metadata) -> dict:
        """Publish a SavedModel folder, or a tar(.gz) of one, as the next version of `name`.

        `metadata`: description, tags, license, model_card, aliases, on_progress (see
        `_publish_folder`)."""
        check_name(name)
        source = Path(source)
        if source.is_dir():
            return self._publish_folder(saved_model_root(source), name, **metadata)
        if not source.is_file():
            raise InvalidModel(f"{source} does not exist")
        with open(source, "rb") as stream:
            return self.publish_archive(stream, name, **metadata)

    def publish_archive(self, stream, name: str, *, max_bytes: int | None = None,
                        **metadata) -> dict:
        """Publish a SavedModel read as a tar(.gz) stream, extracted safely into a staging folder."""
        check_name(name)
        with tempfile.TemporaryDirectory(prefix="modelhub-staging-") as staging:
            limits = {"max_bytes": max_bytes} if max_bytes else {}
            root = safe_extract(stream, Path(staging), **limits)
            return self._publish_folder(root, name, **metadata)

    def _publish_folder(self, root: Path, name: str, *, description: str = "",
                        tags: dict[str, str] | None = None, license: str | None = None,
                        model_card: str | None = None, aliases: Iterable[str] = (),
                        allow: AllowOps | None = None,
                        on_progress: Progress | None = None) -> dict:
        aliases = [check_alias(a) for a in aliases]
        files = scan_folder(root)
        info = read_saved_model_info(root)
        # Before a byte is stored: a refused graph leaves nothing behind.
        safety = safety_record(scan_saved_model(root), root, allow)
        # Each file lands under its sha256; identical files (in this or any other version) are
        # stored once.
        stored = parallel_map(
            lambda f: self.store.put_content_addressed(f.source, blob_key, on_progress), files)
        manifest = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "name": name,
            "version": 1,
            "created": datetime.now(timezone.utc),
            "files": [{"path": f.path, "size": size, "sha256": digest}
                      for f, (digest, size) in zip(files, stored)],
            "folders": empty_folders(root),
            "total_size": sum(size for _, size in stored),
            "signatures": info.signatures,
            "tensorflow_version": info.tensorflow_version,
            "safety": safety,
            "description": description,
            "tags": tags or {},
            "license": license,
            "model_card": model_card,
            # Tells our own write apart from a rival's when a lost response makes us retry.
            "publish_id": uuid.uuid4().hex,
        }
        manifest = self._write_manifest(manifest)
        # A `gc` that read the manifests before ours was written may have removed a reused blob
        # between our touch and now (it re-checks times, but not atomically): put back any gone.
        for f, (digest, _) in zip(files, stored):
            if not self.store.exists(blob_key(digest)):
                self.store.put_content_addressed(f.source, blob_key)
        for alias in aliases:
            self.set_alias(name, alias, manifest["version"])
        return manifest

    def _write_manifest(self, manifest: dict) -> dict:
        """Take the next free version number, create-only; retry when another publisher won."""
        name = manifest["name"]
        for _ in range(PUBLISH_ATTEMPTS):
            keys = model_keys(self.store, name)
            manifest["version"] = max(keys.versions + keys.deleted, default=0) + 1
            body = dump_manifest(manifest)
            key = manifest_key(name, manifest["version"])
            try:
                self.store.put_if_absent(key, json_bytes(body))
            except ObjectExists:
                with contextlib.suppress(ObjectNotFound, ValueError, KeyError):
                    if self.store.get_json(key).get("publish_id") == manifest["publish_id"]:
                        return load_manifest(body)  # our write landed; its answer was lost
                time.sleep(random.uniform(0, 0.02))  # spread racing publishers apart
                continue
            return load_manifest(body)
        raise ConcurrentModification(
            f"could not take a version number for {name!r} after {PUBLISH_ATTEMPTS} attempts")
