"""The object-store interface: bytes under keys, nothing about models.

A backend implements a handful of primitives; everything composite (bytes helpers, JSON, copy to
a file) is written once here, on top of them.

Keys are `/`-separated relative paths. No component may be empty, `.`, `..`, or start with a `.`:
backends keep their own bookkeeping (temp files) under dot-names, which listing never shows.
"""
from __future__ import annotations

import abc
import io
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Callable, Iterator

from schemas.errors import IntegrityError, InvalidKey, ObjectNotFound

from .hashing import fingerprint, sha256_file

#: Size of the chunks that streams are read and written in.
CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: datetime  # timezone-aware UTC


def check_key(key: str) -> str:
    """Reject keys that are empty, absolute, or have empty, dot or dot-dot components."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key or "\0" in key:
        raise InvalidKey(f"invalid object key {key!r}")
    for part in key.split("/"):
        if not part or part.startswith("."):
            raise InvalidKey(f"invalid object key {key!r}: empty or dot-led component {part!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A list prefix is a key, or a key followed by `/`, or empty (everything)."""
    if prefix:
        check_key(prefix.rstrip("/") or "x/")
    return prefix


class ObjectStore(abc.ABC):
    """Bytes under keys. Implementations must be safe to share between threads."""

    #: The URI this store was opened from, for messages.
    uri: str

    # --- primitives ---------------------------------------------------------------------------

    @abc.abstractmethod
    def put(self, key: str, stream: BinaryIO) -> ObjectInfo:
        """Store everything read from `stream` under `key`, replacing any object there.

        Readers never observe a partly written object: they see the old one or the new one.
        """

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        """Create `key` only if it does not exist; else raise `ObjectExists`. Atomic."""

    @abc.abstractmethod
    def put_if_match(self, key: str, data: bytes, etag: str | None) -> ObjectInfo:
        """Compare-and-swap: replace `key` only if its current etag is `etag`.

        `etag=None` means the key must not exist yet. Raises `PreconditionFailed` otherwise.
        """

    @abc.abstractmethod
    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream the bytes `[start, end)` of `key` in chunks. Raises `ObjectNotFound`."""

    @abc.abstractmethod
    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        """The whole (small) object and the etag of exactly those bytes, read atomically."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size, etag and modification time of `key`. Raises `ObjectNotFound`."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order, fetched page by page."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`. Deleting a missing key is not an error."""

    @abc.abstractmethod
    def touch(self, key: str) -> None:
        """Set the modification time of `key` to now (used to protect blobs from `gc`)."""

    @abc.abstractmethod
    def cleanup_incomplete(self, older_than: datetime) -> int:
        """Remove leftovers of writes that died before finishing and started before `older_than`
        (temp files, multipart uploads). Returns how many were removed."""

    # --- composites (backends may override them with faster paths) -----------------------------

    def put_file(self, key: str, path: str | os.PathLike,
                 on_progress: Callable[[int], None] | None = None) -> ObjectInfo:
        """Store the local file at `path` under `key`; `on_progress` hears bytes as they go."""
        with open(path, "rb") as f:
            return self.put(key, _ProgressReader(f, on_progress) if on_progress else f)

    def put_content_addressed(self, path: str | os.PathLike, key_for: Callable[[str], str],
                              on_progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        """Store a local file under `key_for(its sha256)`; return (sha256, size).

        If that key exists already, its bytes are not sent again; its modification time is
        refreshed instead, so a `gc` grace period protects it. Raises `IntegrityError` if the
        file is written to while this runs. This version hashes first, then uploads; backends
        that can rename cheaply overlap the two."""
        before = fingerprint(path)
        digest = sha256_file(path)
        key = key_for(digest)
        try:
            self.touch(key)
        except ObjectNotFound:
            self.put_file(key, path, on_progress)
            if fingerprint(path) != before:
                self.delete(key)
                raise IntegrityError(f"{path} changed while it was being stored") from None
        else:
            if on_progress:
                on_progress(before[0])
        return digest, before[0]

    def get_file(self, key: str, path: str | os.PathLike,
                 on_progress: Callable[[int], None] | None = None) -> None:
        """Write the object at `key` into the local file `path` (created or truncated)."""
        with open(path, "wb") as out:
            for chunk in self.open(key):
                out.write(chunk)
                if on_progress:
                    out.flush()  # progress promises the bytes are in the file (see TrailingHasher)
                    on_progress(len(chunk))

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        return self.put(key, io.BytesIO(data))

    def get_bytes(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.open(key, start, end))

    def get_json(self, key: str):
        return json.loads(self.get_bytes(key))

    def get_json_with_etag(self, key: str) -> tuple[object, str]:
        """The parsed object and the etag of the bytes it was parsed from (for compare-and-swap)."""
        data, etag = self.read_with_etag(key)
        return json.loads(data), etag

    def list_keys(self, prefix: str = "") -> list[str]:
        return [info.key for info in self.list(prefix)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class _ProgressReader:
    """A read-only view of a stream that reports how many bytes each read returned."""

    def __init__(self, stream: BinaryIO, on_progress: Callable[[int], None]):
        self._stream, self._on_progress = stream, on_progress

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            self._on_progress(len(data))
        return data
