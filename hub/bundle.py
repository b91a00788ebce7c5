"""The files of a SavedModel folder on disk: listing, hashing, and reading with verification."""
from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from schemas.errors import IntegrityError, InvalidModel

from storage.base import CHUNK_SIZE


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative, `/`-separated
    source: Path
    size: int
    #: (size, mtime_ns, inode) when listed: any write to the file changes it.
    fingerprint: tuple[int, int, int]


def fingerprint(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


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
            found.append(LocalFile(rel, full, st.st_size, (st.st_size, st.st_mtime_ns, st.st_ino)))
    found.sort(key=lambda f: f.path)
    return found


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        # file_digest reads into one reused buffer; hashlib releases the GIL while it hashes,
        # so several files hash in parallel on threads.
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check(label: str, sha256: str, size: int, actual_sha256: str, actual_size: int) -> None:
    if actual_size != size:
        raise IntegrityError(f"{label} is corrupted: {actual_size} bytes instead of {size}")
    if actual_sha256 != sha256:
        raise IntegrityError(
            f"{label} is corrupted: sha256 {actual_sha256} does not match the recorded {sha256}")


def check_digest(label: str, sha256: str, size: int, actual: tuple[str, int]) -> None:
    """Raise `IntegrityError` unless `actual` (sha256, size) is what was recorded."""
    _check(label, sha256, size, *actual)


class TrailingHasher:
    """Hashes a file on a second thread while another thread is still writing it, told by
    `advance(n)` how far the writer got. Copy and hash then overlap instead of taking turns, and
    what gets hashed is the bytes that landed in the file, read back from the page cache."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_RDONLY)
        self._digest = hashlib.sha256()
        self._written = self._hashed = 0
        self._done = False
        self._error: BaseException | None = None
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def advance(self, n: int) -> None:
        with self._ready:
            self._written += n
            self._ready.notify()

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    while self._hashed == self._written and not self._done:
                        self._ready.wait()
                    target, done = self._written, self._done
                while self._hashed < target:
                    data = os.pread(self._fd, min(CHUNK_SIZE * 8, target - self._hashed),
                                    self._hashed)
                    if not data:
                        raise IntegrityError("file shrank while it was being hashed")
                    self._digest.update(data)
                    self._hashed += len(data)
                if done:
                    return
        except BaseException as e:  # surfaced by finish()
            self._error = e

    def finish(self) -> tuple[str, int]:
        """Wait for the hash to catch up; return (sha256, bytes hashed)."""
        with self._ready:
            self._done = True
            self._ready.notify()
        self._thread.join()
        os.close(self._fd)
        if self._error:
            raise self._error
        return self._digest.hexdigest(), self._hashed

    def abort(self) -> None:
        with self._ready:
            self._done, self._written = True, self._hashed
            self._ready.notify()
        self._thread.join()
        os.close(self._fd)


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
    _check(label, sha256, size, digest.hexdigest(), seen)
