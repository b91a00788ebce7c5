"""Deleting versions, and garbage collection of what no version references any more."""
from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta, timezone

from schemas.errors import InvalidManifest, ModelNotFound, ObjectExists, ObjectNotFound, VersionInUse
from schemas.manifest import load_artifact
from storage import ObjectStore

from .layout import (
    all_model_keys,
    artifact_keys,
    artifacts_prefix,
    json_bytes,
    manifest_key,
    model_keys,
    scan_key,
    tombstone_key,
)

log = logging.getLogger(__name__)


class Cleanup:
    store: ObjectStore

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version and its artifacts. Its number is never reused; its blobs go at the
        next `gc`."""
        self.manifest(name, version)
        self._check_unaliased(name, version)
        # Tombstone first, aliases checked again after: an alias set meanwhile either sees the
        # tombstone (and backs out, see set_alias) or is seen here (and this delete backs out).
        record = {"deleted": datetime.now(timezone.utc).isoformat()}
        with contextlib.suppress(ObjectExists):
            self.store.put_if_absent(tombstone_key(name, version), json_bytes(record))
        try:
            self._check_unaliased(name, version)
        except VersionInUse:
            self.store.delete(tombstone_key(name, version))  # the manifest still holds n
            raise
        self.store.delete(manifest_key(name, version))
        self.store.delete(scan_key(name, version))
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
        names = sorted({name for name, _ in all_model_keys(self.store)})
        for name in names:
            keys = model_keys(self.store, name)
            for version in keys.versions:
                # ModelNotFound too: the model's last version may be deleted during the run.
                with contextlib.suppress(ModelNotFound):
                    manifest = self.manifest(name, version)
                    referenced.update(f["sha256"] for f in manifest["files"])
            for (version, _), key in artifact_keys(self.store, name).items():
                if version in keys.deleted and version not in keys.versions:
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
