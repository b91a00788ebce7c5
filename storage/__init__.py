"""Bytes under keys: the object stores modelhub keeps its registry in.

`open_store(uri)` picks a backend from a URI:

    /srv/models, ./store, file:///srv/models   -> LocalStore (a folder; the default)
    s3://bucket[/prefix]                        -> S3Store (any S3-compatible endpoint, via boto3)
"""
from __future__ import annotations

from urllib.parse import unquote, urlparse

from schemas.errors import InvalidStoreURI

from .base import ObjectInfo, ObjectStore
from .local import LocalStore


def _local(parsed, uri: str) -> ObjectStore:
    if parsed.netloc not in ("", "localhost"):
        raise InvalidStoreURI(f"file URIs must be local (file:///path), got {uri!r}")
    return LocalStore(unquote(parsed.path))


def _s3(parsed, uri: str) -> ObjectStore:
    from .s3 import S3Store  # boto3 is imported only when an S3 store is used

    if len(parsed.netloc) < 3:
        raise InvalidStoreURI(f"S3 URIs look like s3://bucket/prefix, got {uri!r}")
    return S3Store(parsed.netloc, unquote(parsed.path))


BACKENDS = {"file": _local, "s3": _s3}


def open_store(uri: str) -> ObjectStore:
    """Open the store a URI names; a plain path is a local folder."""
    if not uri:
        raise InvalidStoreURI("no store given: pass --store or set MODELHUB_STORE")
    parsed = urlparse(uri)
    if not parsed.scheme or len(parsed.scheme) == 1:  # a plain path (or a Windows drive letter)
        return LocalStore(uri)
    backend = BACKENDS.get(parsed.scheme)
    if backend is None:
        known = ", ".join(f"{scheme}://" for scheme in BACKENDS)
        raise InvalidStoreURI(f"unknown store scheme {parsed.scheme!r} in {uri!r}; known: {known}")
    return backend(parsed, uri)


__all__ = ["ObjectInfo", "ObjectStore", "LocalStore", "open_store"]
