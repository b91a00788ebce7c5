"""Artifacts: files derived from a version (a TFLite conversion), stored beside it later,
create-only, while the version's manifest and files never change."""
from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from schemas.errors import (
    ArtifactExists,
    ArtifactNotFound,
    IntegrityError,
    InvalidManifest,
    ObjectExists,
    ObjectNotFound,
    VersionNotFound,
)
from schemas.manifest import dump_artifact, load_artifact
from storage import ObjectStore

from ..refs import Reference, check_artifact_name, check_name, check_version
from .files import parallel_map, staged_file
from .layout import artifact_key, artifact_keys, blob_key, json_bytes, tombstone_key

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


class Artifacts:
    store: ObjectStore

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

        found = artifact_keys(self.store, name, version)
        return dict(r for r in parallel_map(read, found.items()) if r)

    def artifact(self, name: str, version: int, artifact: str) -> dict:
        """The record of one artifact of a version."""
        check_name(name)
        check_artifact_name(artifact)
        key = artifact_key(name, version, artifact)
        try:
            data = self.store.get_json(key)
        except ObjectNotFound:
            self.manifest(name, version)  # raises if the version is gone
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
        self.manifest(name, version)  # the version must exist
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
            self.store.put_if_absent(key, json_bytes({**record, "write_id": write_id}))
        except ObjectExists:
            ours = False
            with contextlib.suppress(ObjectNotFound, ValueError, AttributeError):
                ours = self.store.get_json(key).get("write_id") == write_id
            if not ours:
                raise exists from None
        if self.store.exists(tombstone_key(name, version)):
            self.store.delete(key)  # the version was deleted meanwhile: leave nothing behind
            raise VersionNotFound(f"{name}/{version} was deleted")
        if not self.store.exists(blob_key(digest)):  # see Publishing: a racing gc
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
        manifest = self.get(ref)
        record = self.artifact(manifest["name"], manifest["version"], artifact)
        label = f"artifact {artifact} of {manifest['name']}/{manifest['version']}"
        with staged_file(dest_file) as temp:
            self._fetch_blob(record, temp, label, on_progress)
        return record
