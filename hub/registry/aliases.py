"""Aliases (TF Serving's version labels): `name@prod` moved by compare-and-swap."""
from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timezone

from schemas.errors import (
    AliasNotFound,
    ConcurrentModification,
    ObjectNotFound,
    PreconditionFailed,
    VersionNotFound,
)
from storage import ObjectStore

from ..refs import check_alias, check_name
from .layout import alias_key, json_bytes, tombstone_key

#: Writers moving one alias at once retry this often before giving up.
ALIAS_ATTEMPTS = 200


class Aliases:
    store: ObjectStore

    def set_alias(self, name: str, alias: str, version: int, *,
                  expected_version: int | None = None) -> dict:
        """Point `name@alias` at `version`. With `expected_version`, only if it points there now."""
        check_alias(alias)
        self.manifest(name, version)  # the target must exist
        key = alias_key(name, alias)
        for _ in range(ALIAS_ATTEMPTS):
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
                written = self.store.put_if_match(key, json_bytes(record), etag)
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
                        self.store.put_if_match(key, json_bytes(current), written.etag)
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
