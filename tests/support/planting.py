"""Versions written into a store by hand, as anyone who can write into the store could: files
and a manifest, bypassing publish and its safety scan (and with whatever verdict they like)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

from hub.registry import Registry
from hub.registry.files import scan_folder
from hub.registry.layout import blob_key
from hub.savedmodel import read_saved_model_info
from schemas.manifest import MANIFEST_SCHEMA_VERSION


def plant_version(registry: Registry, folder: Path, name: str, safety: dict | None = None) -> dict:
    files = scan_folder(folder)
    info = read_saved_model_info(folder)
    stored = [registry.store.put_content_addressed(f.source, blob_key) for f in files]
    return registry._write_manifest({
        "schema_version": MANIFEST_SCHEMA_VERSION, "name": name, "version": 1,
        "created": datetime.now(timezone.utc),
        "files": [{"path": f.path, "size": size, "sha256": digest}
                  for f, (digest, size) in zip(files, stored)],
        "total_size": sum(size for _, size in stored), "signatures": info.signatures,
        "tensorflow_version": info.tensorflow_version, "safety": safety,
        "publish_id": uuid.uuid4().hex})
