"""The files of a SavedModel folder on disk: listing, hashing, and reading with verification."""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from schemas.errors import IntegrityError, InvalidModel

from storage.base import CHUNK_SIZE


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative, `/`-separated
    source: Path
    size: int


def scan_folder(root: Path) -> list[LocalFile]:
    """Every regular file under `root`, sorted. Links and special files are refused: a model
    folder should hold only files, and following links could publish data from elsewhere."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                raise InvalidModel(f"{os.path.join(dirpath, name)} is a symbolic link; "
                                   "a model folder must hold only regular files")
        for name in sorted(filenames):
            full = Path(dirpath) / name
            st = full.lstat()
            if not stat.S_ISREG(st.st_mode):
                raise InvalidModel(f"{full} is not a regular file (link, socket or device); "
                                   "a model folder must hold only regular files")
            rel = full.relative_to(root).as_posix()
            found.append(LocalFile(rel, full, st.st_size))
    found.sort(key=lambda f: f.path)
    return found


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        # file_digest reads into one reused buffer; hashlib releases the GIL while it hashes,
        # so several files hash in parallel on threads.
        return hashlib.file_digest(f, "sha256").hexdigest()


class HashingReader:
    """Wraps a binary stream, hashing and counting what passes through `read`; `on_read` hears
    how many bytes each read returned (for progress bars)."""

    def __init__(self, stream: BinaryIO, on_read: Callable[[int], None] | None = None):
        self._stream = stream
        self._digest = hashlib.sha256()
        self._on_read = on_read
        self.size = 0

    def _seen(self, data) -> None:
        self._digest.update(data)
        self.size += len(data)
        if self._on_read and len(data):
            self._on_read(len(data))

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._seen(data)
        return data

    def readinto(self, buffer) -> int:
        n = self._stream.readinto(buffer)
        if n:
            self._seen(memoryview(buffer)[:n])
        return n

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def verified_chunks(chunks: Iterable[bytes], sha256: str, size: int, label: str) -> Iterator[bytes]:
    """Pass chunks through, then raise `IntegrityError` if they did not hash to `sha256`.

    Callers stage what they receive and commit it only once the iterator is exhausted."""
    digest = hashlib.sha256()
    seen = 0
    for chunk in chunks:
        digest.update(chunk)
        seen += len(chunk)
        if seen > size:
            raise IntegrityError(f"{label} is corrupted: more than the {size} bytes recorded")
        yield chunk
    if seen != size:
        raise IntegrityError(f"{label} is corrupted: {seen} bytes instead of {size}")
    if digest.hexdigest() != sha256:
        raise IntegrityError(
            f"{label} is corrupted: sha256 {digest.hexdigest()} does not match the recorded {sha256}")
