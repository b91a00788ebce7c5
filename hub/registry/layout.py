"""Where the registry keeps what, in its object store: the heart of its correctness.

A model of the default namespace lives under `models/<name>/`, one of namespace `ns` (named
`ns/<name>`) under `namespaces/ns/models/<name>/`, with the same keys below:

    blobs/sha256/<first 2 hex>/<digest>     file contents, immutable, shared between versions
                                            (and between namespaces: a blob is its content)
    models/<name>/versions/<n>.json         manifest of version n; create-only; exists = published
    models/<name>/aliases/<alias>.json      {"version": n, ...}; moved by compare-and-swap
    models/<name>/deleted/<n>.json          tombstone: version n was deleted and is never reused
    models/<name>/artifacts/<n>/<a>.json    artifact a of version n (e.g. tflite-int8): its file's
                                            path, size, sha256 (a blob), kind and metadata; create-only
    models/<name>/scans/<n>.json            the safety scan's verdict on version n, for versions
                                            published before the manifest carried it; create-only
    namespaces/<ns>/namespace.json          a namespace: whether it is private (its record is
                                            what makes it exist; `default` may have one too)
    audit/<ns>/<seq>.json, audit/<ns>/HEAD  the audit log of a namespace (see hub/audit.py)
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from storage import ObjectStore

from ..refs import is_version_text


def blob_key(sha256: str) -> str:
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def model_prefix(name: str) -> str:
    """Where everything of model `name` lives (`name` checked by the caller)."""
    if "/" in name:
        namespace, base = name.split("/", 1)
        return f"namespaces/{namespace}/models/{base}/"
    return f"models/{name}/"


def namespace_key(namespace: str) -> str:
    return f"namespaces/{namespace}/namespace.json"


def model_name_of(key: str) -> str | None:
    """The model a key under `models/` or `namespaces/` belongs to (None: not a model's)."""
    parts = key.split("/")
    if parts[0] == "models" and len(parts) > 2:
        return parts[1]
    if parts[0] == "namespaces" and len(parts) > 4 and parts[2] == "models":
        return f"{parts[1]}/{parts[3]}"
    return None


def manifest_key(name: str, version: int) -> str:
    return f"{model_prefix(name)}versions/{version}.json"


def alias_key(name: str, alias: str) -> str:
    return f"{model_prefix(name)}aliases/{alias}.json"


def tombstone_key(name: str, version: int) -> str:
    return f"{model_prefix(name)}deleted/{version}.json"


def artifacts_prefix(name: str, version: int | None = None) -> str:
    """Where the artifact records of one version (or, without `version`, of every version) live."""
    base = f"{model_prefix(name)}artifacts/"
    return base if version is None else f"{base}{version}/"


def artifact_key(name: str, version: int, artifact: str) -> str:
    return f"{artifacts_prefix(name, version)}{artifact}.json"


def scan_key(name: str, version: int) -> str:
    return f"{model_prefix(name)}scans/{version}.json"


def all_model_keys(store: ObjectStore) -> Iterator[tuple[str, str]]:
    """(model name, key) of every key of every model, in every namespace."""
    for prefix in ("models/", "namespaces/"):
        for key in store.list_keys(prefix):
            name = model_name_of(key)
            if name is not None:
                yield name, key


def json_bytes(obj: object) -> bytes:
    """How every record is written: stable, readable JSON."""
    return json.dumps(obj, indent=1, sort_keys=True).encode()


@dataclass(frozen=True)
class ModelKeys:
    """What one listing of `models/<name>/` tells about a model."""

    versions: list[int]
    deleted: list[int]
    aliases: list[str]


def model_keys(store: ObjectStore, name: str) -> ModelKeys:
    """Published versions, deleted versions and aliases of one model, from one listing."""
    versions, deleted, aliases = [], [], []
    prefix = model_prefix(name)
    for key in store.list_keys(prefix):
        kind, _, leaf = key[len(prefix):].partition("/")
        stem = leaf[:-5] if leaf.endswith(".json") else None
        if stem is None or "/" in stem:
            continue
        if kind == "versions" and is_version_text(stem):
            versions.append(int(stem))
        elif kind == "deleted" and is_version_text(stem):
            deleted.append(int(stem))
        elif kind == "aliases":
            aliases.append(stem)
    return ModelKeys(sorted(versions), sorted(deleted), sorted(aliases))


def artifact_keys(store: ObjectStore, name: str,
                  version: int | None = None) -> dict[tuple[int, str], str]:
    """{(version, artifact): record key} of one version, or of every version of `name`."""
    prefix = artifacts_prefix(name)
    found = {}
    for key in store.list_keys(artifacts_prefix(name, version)):
        number, _, leaf = key[len(prefix):].partition("/")
        if is_version_text(number) and leaf.endswith(".json") and "/" not in leaf:
            found[(int(number), leaf[:-5])] = key
    return found
