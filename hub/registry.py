"""The registry: named, versioned, immutable SavedModel bundles in an object store.

Store layout (the heart of correctness)::

    blobs/sha256/<first 2 hex>/<digest>     file contents, immutable, shared between versions
    models/<name>/versions/<n>.json         manifest of version n; create-only; exists = published
    models/<name>/aliases/<alias>.json      {"version": n, ...}; moved by compare-and-swap
    models/<name>/deleted/<n>.json          tombstone: version n was deleted and is never reused
    models/<name>/artifacts/<n>/<a>.json    artifact a of version n (e.g. tflite-int8): its file's
                                            path, size, sha256 (a blob), kind and metadata; create-only

Publishing uploads blobs first and writes the manifest last, create-only, so a crash at any point
leaves no visible half version and two publishers racing for version n cannot both win.
Artifacts (files derived from a version, like a TFLite conversion) are added the same way later,
beside the manifest, which is never rewritten; reading a manifest fills in its `artifacts`.
Every byte read back is checked against its sha256 before it is handed over.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import tempfile
import time
import uuid
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from schemas.errors import (
    AliasNotFound,
    ArtifactExists,
    ArtifactNotFound,
    ConcurrentModification,
    FileNotInVersion,
    IntegrityError,
    InvalidArgument,
    InvalidManifest,
    InvalidModel,
    ModelNotFound,
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    VersionInUse,
    VersionNotFound,
)
from schemas.manifest import (
    MANIFEST_SCHEMA_VERSION,
    dump_artifact,
    dump_manifest,
    load_artifact,
    load_manifest,
)

from storage import ObjectStore, open_store

from .archive import safe_extract, saved_model_root, tar_gz_chunks
from storage.hashing import TrailingHasher

from .bundle import check_digest, scan_folder, staged_file, staged_folder, verified_chunks
from .refs import (
    Reference,
    check_alias,
    check_artifact_name,
    check_name,
    check_version,
    parse_reference,
)
from .signatures import read_saved_model_info
from .transfer import parallel_map

log = logging.getLogger(__name__)

#: Where the registry lives when neither --store nor MODELHUB_STORE says.
DEFAULT_STORE = os.path.join("~", ".modelhub", "store")
PUBLISH_ATTEMPTS = 200

Progress = Callable[[int], None]


def blob_key(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def manifest_key(name: str, version: int) -> str:
    return f"models/{name}/versions/{version}.json"


def alias_key(name: str, alias: str) -> str:
    return f"models/{name}/aliases/{alias}.json"


def tombstone_key(name: str, version: int) -> str:
    return f"models/{name}/deleted/{version}.json"


def artifacts_prefix(name: str, version: int | None = None) -> str:
    """Where the artifact records of one version (or, without `version`, of every version) live."""
    base = f"models/{name}/artifacts/"
    return base if version is None else f"{base}{version}/"


def artifact_key(name: str, version: int, artifact: str) -> str:
    return f"{artifacts_prefix(name, version)}{artifact}.json"


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True).encode()


def parse_duration(text: str) -> timedelta:
    """`0s`, `90s`, `30m`, `24h`, `7d`."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not text or text[-1] not in units or not text[:-1].isdigit():
        raise InvalidArgument(f"invalid duration {text!r}: use a whole number with s, m, h or d "
                              "(0s, 30m, 24h, 7d)")
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])



class Registry:
    def __init__(self, store: ObjectStore):
        self.store = store

    @classmethod
    def open(cls, uri: str) -> "Registry":
        return cls(open_store(os.path.expanduser(uri)))

    def __repr__(self) -> str:
        return f"Registry({self.store.uri!r})"

    # --- reading ------------------------------------------------------------------------------

    def _model_keys(self, name: str) -> tuple[list[int], list[int], list[str]]:
        """(published versions, deleted versions, aliases) of one model, from one listing."""
        versions, deleted, aliases = [], [], []
        prefix = f"models/{name}/"
        for key in self.store.list_keys(prefix):
            kind, _, leaf = key[len(prefix):].partition("/")
            stem = leaf[:-5] if leaf.endswith(".json") else None
            if stem is None or "/" in stem:
                continue
            if kind == "versions" and stem.isdigit():
                versions.append(int(stem))
            elif kind == "deleted" and stem.isdigit():
                deleted.append(int(stem))
            elif kind == "aliases":
                aliases.append(stem)
        return sorted(versions), sorted(deleted), sorted(aliases)

    def check(self) -> None:
        """Raise unless the store answers (for readiness probes): one HEAD or stat. The key need
        not exist; an answer either way is what counts."""
        self.store.exists("health/probe")

    def model_names(self) -> list[str]:
        names = set()
        for key in self.store.list_keys("models/"):
            parts = key.split("/")
            if len(parts) == 4 and parts[2] == "versions":
                names.add(parts[1])
        return sorted(names)

    def versions(self, name: str) -> list[int]:
        check_name(name)
        return self._model_keys(name)[0]

    def manifest(self, name: str, version: int, *, artifacts: bool = True) -> dict:
        """Version `version` of `name`; with `artifacts` (one more listing) its artifact records
        are filled in, so that readers see conversions added after publishing."""
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
        if artifacts:
            manifest["artifacts"] = {**manifest["artifacts"], **self.artifacts(name, version)}
        return manifest

    def aliases(self, name: str) -> dict[str, int]:
        check_name(name)
        found = {}
        for alias in self._model_keys(name)[2]:
            with contextlib.suppress(ObjectNotFound):
                found[alias] = self.store.get_json(alias_key(name, alias))["version"]
        return found

    def get(self, ref: str | Reference, *, artifacts: bool = True) -> dict:
        """The manifest a reference points to now (one manifest read, and with `artifacts` one
        listing of its artifact records)."""
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        if ref.version is not None:
            return self.manifest(ref.name, ref.version, artifacts=artifacts)
        if ref.alias is not None:
            try:
                version = self.store.get_json(alias_key(ref.name, ref.alias))["version"]
            except ObjectNotFound:
                if not self.versions(ref.name):
                    raise ModelNotFound(f"model {ref.name!r} not found") from None
                raise AliasNotFound(f"model {ref.name!r} has no alias {ref.alias!r}") from None
            try:
                return self.manifest(ref.name, version, artifacts=artifacts)
            except VersionNotFound:
                raise VersionNotFound(f"alias {ref} points to version {version}, which was deleted") from None
        versions = self.versions(ref.name)
        if not versions:
            raise ModelNotFound(f"model {ref.name!r} not found")
        return self.manifest(ref.name, versions[-1], artifacts=artifacts)

    def resolve(self, ref: str | Reference) -> tuple[str, int]:
        """(name, version) that a reference points to now."""
        manifest = self.get(ref, artifacts=False)
        return manifest["name"], manifest["version"]

    def list_models(self, query: str | None = None) -> list[dict]:
        """One summary per model (from its latest manifest); `query` matches name, description
        and tags, case-insensitively."""
        def summary(name: str) -> dict | None:
            versions, _, alias_names = self._model_keys(name)
            if not versions:
                return None
            try:
                latest = self.manifest(name, versions[-1], artifacts=False)
            except (VersionNotFound, InvalidManifest, IntegrityError) as e:
                # Deleted since the listing, or damaged: one model must not break the list.
                log.warning("leaving %s out of the model list: %s", name, e)
                return None
            return {
                "name": name,
                "latest": versions[-1],
                "versions": versions,
                "aliases": alias_names,
                "description": latest["description"],
                "tags": latest["tags"],
                "license": latest["license"],
                "updated": latest["created"],
            }

        summaries = [s for s in parallel_map(summary, self.model_names()) if s]
        if query:
            q = query.lower()
            summaries = [s for s in summaries if q in s["name"] or q in s["description"].lower()
                         or any(q in f"{k}={v}".lower() for k, v in s["tags"].items())]
        return summaries

    # --- publishing ---------------------------------------------------------------------------

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
                        on_progress: Progress | None = None) -> dict:
        aliases = [check_alias(a) for a in aliases]
        files = scan_folder(root)
        info = read_saved_model_info(root)
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
            "total_size": sum(size for _, size in stored),
            "signatures": info.signatures,
            "tensorflow_version": info.tensorflow_version,
            "description": description,
            "tags": tags or {},
            "license": license,
            "model_card": model_card,
            "artifacts": {},
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
            versions, deleted, _ = self._model_keys(name)
            manifest["version"] = max(versions + deleted, default=0) + 1
            body = dump_manifest(manifest)
            key = manifest_key(name, manifest["version"])
            try:
                self.store.put_if_absent(key, _json_bytes(body))
            except ObjectExists:
                with contextlib.suppress(ObjectNotFound, ValueError, KeyError):
                    if self.store.get_json(key).get("publish_id") == manifest["publish_id"]:
                        return load_manifest(body)  # our write landed; its answer was lost
                time.sleep(random.uniform(0, 0.02))  # spread racing publishers apart
                continue
            return load_manifest(body)
        raise ConcurrentModification(
            f"could not take a version number for {name!r} after {PUBLISH_ATTEMPTS} attempts")

    # --- aliases ------------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, *,
                  expected_version: int | None = None) -> dict:
        """Point `name@alias` at `version`. With `expected_version`, only if it points there now."""
        check_alias(alias)
        self.manifest(name, version, artifacts=False)  # the target must exist
        key = alias_key(name, alias)
        for _ in range(PUBLISH_ATTEMPTS):
            try:
                current, etag = self.store.get_json_with_etag(key)
            except ObjectNotFound:
                current, etag = None, None
            previous = current["version"] if current else None
            if expected_version is not None and previous != expected_version:
                raise PreconditionFailed(
                    f"alias {name}@{alias} points to {previous}, not {expected_version}")
            record = {"version": version, "previous": previous,
                      "updated": datetime.now(timezone.utc).isoformat(),
                      "write_id": uuid.uuid4().hex}
            try:
                written = self.store.put_if_match(key, _json_bytes(record), etag)
            except PreconditionFailed:
                with contextlib.suppress(ObjectNotFound, ValueError, KeyError):
                    if self.store.get_json(key).get("write_id") == record["write_id"]:
                        return record  # our write landed; its answer was lost and retried
                continue  # moved by someone else between our read and write: read again
            if self.store.exists(tombstone_key(name, version)):
                # The version was being deleted while we pointed at it: put the alias back.
                with contextlib.suppress(PreconditionFailed):
                    if current is None:
                        self.store.delete(key)
                    else:
                        self.store.put_if_match(key, _json_bytes(current), written.etag)
                raise VersionNotFound(f"{name}/{version} was deleted")
            return record
        raise ConcurrentModification(f"alias {name}@{alias} keeps changing; try again")

    def remove_alias(self, name: str, alias: str) -> None:
        check_name(name)
        check_alias(alias)
        key = alias_key(name, alias)
        if not self.store.exists(key):
            raise AliasNotFound(f"model {name!r} has no alias {alias!r}")
        self.store.delete(key)

    # --- artifacts ----------------------------------------------------------------------------

    def _artifact_keys(self, name: str, version: int | None = None) -> dict[tuple[int, str], str]:
        """{(version, artifact): record key} of one version, or of every version of `name`."""
        prefix = artifacts_prefix(name)
        found = {}
        for key in self.store.list_keys(artifacts_prefix(name, version)):
            number, _, leaf = key[len(prefix):].partition("/")
            if number.isdigit() and leaf.endswith(".json") and "/" not in leaf:
                found[(int(number), leaf[:-5])] = key
        return found

    def artifacts(self, name: str, version: int) -> dict[str, dict]:
        """{artifact name: record} of one version (a damaged record is left out, with a warning)."""
        check_name(name)
        check_version(version)

        def read(item: tuple[tuple[int, str], str]) -> tuple[str, dict] | None:
            (_, artifact), key = item
            try:
                return artifact, load_artifact(self.store.get_json(key), key)
            except ObjectNotFound:
                return None  # removed since the listing (its version is being deleted)
            except (InvalidManifest, ValueError) as e:
                log.warning("leaving out artifact %s of %s/%s: %s", artifact, name, version, e)
                return None

        return dict(r for r in parallel_map(read, self._artifact_keys(name, version).items()) if r)

    def artifact(self, name: str, version: int, artifact: str) -> dict:
        """The record of one artifact of a version."""
        check_name(name)
        check_artifact_name(artifact)
        key = artifact_key(name, version, artifact)
        try:
            data = self.store.get_json(key)
        except ObjectNotFound:
            self.manifest(name, version, artifacts=False)  # raises if the version is gone
            present = ", ".join(sorted(self.artifacts(name, version))) or "none"
            raise ArtifactNotFound(f"{name}/{version} has no artifact {artifact!r} "
                                   f"(it has: {present})") from None
        except ValueError as e:
            raise IntegrityError(f"artifact record {key} is not valid JSON: {e}") from e
        return load_artifact(data, f"artifact {artifact} of {name}/{version}")

    def add_artifact(self, name: str, version: int, artifact: str, file_path: str | Path,
                     kind: str, metadata: dict, *, path: str | None = None) -> dict:
        """Store the file at `file_path` as artifact `artifact` of `name/version`, create-only:
        its bytes as a blob (shared like every file), then its record. The version's manifest
        and files are not touched. `path` is the file name the artifact is known by (default:
        `file_path`'s name). Returns the record."""
        check_artifact_name(artifact)
        self.manifest(name, version, artifacts=False)  # the version must exist
        key = artifact_key(name, version, artifact)
        exists = ArtifactExists(f"{name}/{version} already has an artifact {artifact!r}; "
                                "artifacts are never overwritten")
        if self.store.exists(key):
            raise exists  # before uploading anything
        digest, size = self.store.put_content_addressed(file_path, blob_key)
        record = dump_artifact({
            "path": path or Path(file_path).name, "size": size, "sha256": digest, "kind": kind,
            "metadata": {"created": datetime.now(timezone.utc).isoformat(), **metadata}})
        # Tells our own write apart from a rival's when a lost response makes the store retry.
        write_id = uuid.uuid4().hex
        try:
            self.store.put_if_absent(key, _json_bytes({**record, "write_id": write_id}))
        except ObjectExists:
            ours = False
            with contextlib.suppress(ObjectNotFound, ValueError, AttributeError):
                ours = self.store.get_json(key).get("write_id") == write_id
            if not ours:
                raise exists from None
        if self.store.exists(tombstone_key(name, version)):
            self.store.delete(key)  # the version was deleted meanwhile: leave nothing behind
            raise VersionNotFound(f"{name}/{version} was deleted")
        if not self.store.exists(blob_key(digest)):  # see _publish_folder: a racing gc
            self.store.put_content_addressed(file_path, blob_key)
        return load_artifact(record)

    def artifact_chunks(self, manifest: dict, artifact: str, record: dict, start: int = 0,
                        end: int | None = None) -> Iterator[bytes]:
        """The bytes of one artifact, verified like `file_chunks`."""
        label = f"artifact {artifact} of {manifest['name']}/{manifest['version']}"
        return self._blob_chunks(record, label, start, end)

    def pull_artifact(self, ref: str | Reference, artifact: str, dest_file: str | Path, *,
                      on_progress: Progress | None = None) -> dict:
        """Write one artifact of a version to the file `dest_file`, verified: it is downloaded
        beside it and renamed into place only if its sha256 matches. Returns the record."""
        manifest = self.get(ref, artifacts=False)
        record = self.artifact(manifest["name"], manifest["version"], artifact)
        label = f"artifact {artifact} of {manifest['name']}/{manifest['version']}"
        with staged_file(dest_file) as temp:
            self._fetch_blob(record, temp, label, on_progress)
        return record

    def _fetch_blob(self, entry: dict, target: Path, label: str,
                    on_progress: Progress | None) -> None:
        """Download the blob of a file entry or artifact record to `target`, hashing as it
        arrives; raises IntegrityError if it is missing or its sha256 or size differ."""
        hasher = TrailingHasher(target, on_progress)
        try:
            self.store.get_file(blob_key(entry["sha256"]), target, hasher.advance)
            check_digest(label, entry["sha256"], entry["size"], hasher.finish())
        except ObjectNotFound:
            raise IntegrityError(f"{label} is missing from the store") from None
        finally:
            hasher.close()

    # --- deleting and gc ----------------------------------------------------------------------

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version and its artifacts. Its number is never reused; its blobs go at the
        next `gc`."""
        self.manifest(name, version, artifacts=False)
        self._check_unaliased(name, version)
        # Tombstone first, aliases checked again after: an alias set meanwhile either sees the
        # tombstone (and backs out, see set_alias) or is seen here (and this delete backs out).
        record = {"deleted": datetime.now(timezone.utc).isoformat()}
        with contextlib.suppress(ObjectExists):
            self.store.put_if_absent(tombstone_key(name, version), _json_bytes(record))
        try:
            self._check_unaliased(name, version)
        except VersionInUse:
            self.store.delete(tombstone_key(name, version))  # the manifest still holds n
            raise
        self.store.delete(manifest_key(name, version))
        # After the tombstone: an artifact added meanwhile sees it and removes its own record
        # (see add_artifact); a delete cut short here leaves records that `gc` removes.
        for key in self.store.list_keys(artifacts_prefix(name, version)):
            self.store.delete(key)

    def _check_unaliased(self, name: str, version: int) -> None:
        holders = sorted(a for a, v in self.aliases(name).items() if v == version)
        if holders:
            raise VersionInUse(f"{name}/{version} is the target of alias(es) "
                               f"{', '.join(holders)}; move or remove them first")

    def gc(self, grace: timedelta = timedelta(hours=24)) -> dict:
        """Remove blobs that no manifest and no artifact record references, last touched more
        than `grace` ago, and leftovers of interrupted writes (temp files, multipart uploads,
        artifact records of deleted versions). `grace` must exceed the longest publish or
        conversion in flight."""
        cutoff = datetime.now(timezone.utc) - grace
        # Blobs are listed before manifests are read: a blob uploaded after this listing is not
        # a candidate, and one listed here but referenced by a manifest written since was
        # touched or uploaded within `grace`.
        candidates = [info for info in self.store.list("blobs/sha256/") if info.modified < cutoff]
        referenced = set()
        removed_records = 0
        # Every name with any key: a model whose last version was deleted may still hold the
        # artifact records an interrupted delete_version left behind.
        names = sorted({key.split("/")[1] for key in self.store.list_keys("models/")})
        for name in names:
            versions, deleted, _ = self._model_keys(name)
            for version in versions:
                with contextlib.suppress(VersionNotFound):
                    manifest = self.manifest(name, version, artifacts=False)
                    referenced.update(f["sha256"] for f in manifest["files"])
                    referenced.update(a["sha256"] for a in manifest["artifacts"].values())
            for (version, _), key in self._artifact_keys(name).items():
                if version in deleted and version not in versions:
                    self.store.delete(key)  # left behind by an interrupted delete_version
                    removed_records += 1
                    continue
                try:
                    referenced.add(load_artifact(self.store.get_json(key), key)["sha256"])
                except (ObjectNotFound, InvalidManifest, ValueError) as e:
                    log.warning("gc: skipping artifact record %s: %s", key, e)
        removed = freed = 0
        for info in candidates:
            if info.key.rsplit("/", 1)[-1] in referenced:
                continue
            try:
                # A publish may have reused this blob (touching it) after it was listed.
                if self.store.head(info.key).modified >= cutoff:
                    continue
            except ObjectNotFound:
                continue
            self.store.delete(info.key)
            removed += 1
            freed += info.size
        incomplete = self.store.cleanup_incomplete(cutoff)
        return {"removed_blobs": removed, "freed_bytes": freed, "removed_incomplete": incomplete,
                "removed_artifact_records": removed_records}

    # --- fetching -----------------------------------------------------------------------------

    def file_entry(self, manifest: dict, path: str) -> dict:
        for entry in manifest["files"]:
            if entry["path"] == path:
                return entry
        raise FileNotInVersion(f"{manifest['name']}/{manifest['version']} has no file {path!r}")

    def file_chunks(self, manifest: dict, entry: dict, start: int = 0,
                    end: int | None = None) -> Iterator[bytes]:
        """The bytes of one file of a version. A whole file is verified as it streams (the
        iterator raises `IntegrityError` at the end on a mismatch); a range cannot be, so whoever
        reassembles ranges checks the sha256 of the whole."""
        label = f"file {entry['path']} of {manifest['name']}/{manifest['version']}"
        return self._blob_chunks(entry, label, start, end)

    def _blob_chunks(self, entry: dict, label: str, start: int = 0,
                     end: int | None = None) -> Iterator[bytes]:
        try:
            chunks = self.store.open(blob_key(entry["sha256"]), start, end)
        except ObjectNotFound:
            raise IntegrityError(f"{label} is missing from the store") from None
        if start or end is not None:
            return chunks
        return verified_chunks(chunks, entry["sha256"], entry["size"], label)

    def pull(self, ref: str | Reference, dest: str | Path, *,
             on_progress: Progress | None = None) -> dict:
        """Download a version into folder `dest`, verifying every file before `dest` appears."""
        manifest = self.get(ref)
        with staged_folder(dest) as staging:
            def fetch(entry: dict) -> None:
                target = staging / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                label = f"file {entry['path']} of {manifest['name']}/{manifest['version']}"
                self._fetch_blob(entry, target, label, on_progress)

            parallel_map(fetch, manifest["files"])
        return manifest

    def archive(self, ref: str | Reference) -> tuple[dict, Iterator[bytes]]:
        """The manifest and a tar.gz stream of the version whose root is the SavedModel root.

        Each file is verified as it streams; a mismatch raises mid-stream, so a consumer must
        treat the archive as valid only once the iterator finishes."""
        manifest = self.get(ref)
        entries = ((e["path"], e["size"], self.file_chunks(manifest, e))
                   for e in manifest["files"])
        return manifest, tar_gz_chunks(entries, self._compression_level(manifest))

    def _compression_level(self, manifest: dict) -> int:
        """Deflate only if the weights compress. Trained float weights barely do, and deflate
        runs at ~30 MB/s on them, far below a network's speed, while storing runs at ~300 MB/s;
        so the largest file's first MiB decides."""
        largest = max(manifest["files"], key=lambda e: e["size"])
        try:
            sample = self.store.get_bytes(blob_key(largest["sha256"]), 0, 1024 * 1024)
        except ObjectNotFound:
            return 1  # the stream itself reports the missing file
        if not sample or len(zlib.compress(sample, 1)) < 0.9 * len(sample):
            return 1
        return 0
