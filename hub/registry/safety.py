"""The safety verdict of a version: the one its manifest carries (published since the scan
exists), or the create-only scan record of an older version (`modelhub scan`)."""
from __future__ import annotations

import contextlib
from datetime import datetime, timezone

from schemas.errors import IntegrityError, ObjectExists, ObjectNotFound
from schemas.manifest import dump_safety, load_safety
from storage import ObjectStore

from ..savedmodel.scan import Verdict, scan_graph
from .layout import json_bytes, scan_key

SAVED_MODEL_BINARY = "saved_model.pb"
OTHER_FORMATS = ("saved_model.pbtxt", "saved_model.cpb")


def safety_state(record: dict | None) -> str:
    """A verdict record in one word (schemas.api.SAFETY_STATES)."""
    if record is None:
        return "unscanned"
    if record["safe"]:
        return "safe"
    return "allowed" if record.get("allowance") else "unsafe"


class Safety:
    store: ObjectStore

    def safety(self, manifest: dict) -> dict | None:
        """The version's verdict record, or None if it was never scanned."""
        if manifest.get("safety") is not None:
            return manifest["safety"]
        key = scan_key(manifest["name"], manifest["version"])
        try:
            return load_safety(self.store.get_json(key), key)
        except ObjectNotFound:
            return None
        except ValueError as e:
            raise IntegrityError(f"scan record {key} is not valid JSON: {e}") from e

    def scan_version(self, manifest: dict) -> Verdict:
        """Scan a stored version's graph afresh (its saved_model.pb, verified, and its file
        list): what serving does before it loads a version, trusting no recorded verdict."""
        paths = {entry["path"] for entry in manifest["files"]}
        data = None
        if SAVED_MODEL_BINARY in paths:
            entry = self.file_entry(manifest, SAVED_MODEL_BINARY)
            data = b"".join(self.file_chunks(manifest, entry))
        return scan_graph(data, paths, [p for p in OTHER_FORMATS if p in paths])

    def scan(self, ref) -> dict:
        """Scan the version `ref` points to afresh and record the verdict if it has none yet:
        the fresh verdict, with the recorded allowance if it still covers every finding, and
        whether a record was written."""
        manifest = self.get(ref)
        verdict, recorded = self.record_scan(manifest)
        allowance = (self.safety(manifest) or {}).get("allowance")
        if allowance and verdict.refused_beyond(allowance["ops"]):
            allowance = None
        return {"name": manifest["name"], "version": manifest["version"],
                **verdict.to_record(), "allowance": allowance, "recorded": recorded}

    def record_scan(self, manifest: dict) -> tuple[Verdict, bool]:
        """Scan a version and, if it has no verdict yet, record this one (create-only). Returns
        the verdict and whether it was recorded."""
        verdict = self.scan_version(manifest)
        if self.safety(manifest) is not None:
            return verdict, False
        record = {**verdict.to_record(), "scanned": datetime.now(timezone.utc).isoformat(),
                  "allowance": None}
        with contextlib.suppress(ObjectExists):  # scanned by someone else meanwhile
            self.store.put_if_absent(scan_key(manifest["name"], manifest["version"]),
                                     json_bytes(dump_safety(record)))
            return verdict, True
        return verdict, False
