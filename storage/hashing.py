"""Hashing local files: once, or while another thread is still writing them."""
from __future__ import annotations

import hashlib
import os
import threading
from typing import Callable

from schemas.errors import IntegrityError

#: The trailing hasher reads back what the writer wrote in slices of this size.
HASH_BUFFER_SIZE = 4 * 1024 * 1024


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        # file_digest reads into one reused buffer; hashlib releases the GIL while it hashes,
        # so several files hash in parallel on threads.
        return hashlib.file_digest(f, "sha256").hexdigest()


def fingerprint(path: str | os.PathLike) -> tuple[int, int, int]:
    """(size, mtime_ns, inode): any write to the file, or replacing it, changes it."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


class TrailingHasher:
    """Hashes a file on a second thread while another thread is still writing it, told by
    `advance(n)` how far the writer got. Copy and hash then overlap instead of taking turns, and
    what gets hashed is the bytes that landed in the file, read back from the page cache."""

    def __init__(self, path: str | os.PathLike,
                 on_progress: Callable[[int], None] | None = None):
        """`path` is created if the writer has not opened it yet; `on_progress` hears every
        `advance`, so `advance` can be handed to the writer as its progress callback."""
        self._fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        self._on_progress = on_progress
        # One reused buffer: fresh allocations per read cost page faults on every chunk.
        self._buffer = bytearray(HASH_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
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
        if self._on_progress:
            self._on_progress(n)

    def _run(self) -> None:
        try:
            while True:
                with self._ready:
                    while self._hashed == self._written and not self._done:
                        self._ready.wait()
                    target, done = self._written, self._done
                while self._hashed < target:
                    want = min(len(self._buffer), target - self._hashed)
                    n = os.preadv(self._fd, [self._view[:want]], self._hashed)
                    if not n:
                        raise IntegrityError("file shrank while it was being hashed")
                    self._digest.update(self._view[:n])
                    self._hashed += n
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
        if self._error:
            raise self._error
        return self._digest.hexdigest(), self._hashed

    def abort(self) -> None:
        """Stop without hashing what is left (the writer failed)."""
        with self._ready:
            self._done, self._written = True, self._hashed
            self._ready.notify()
        self._thread.join()

    def close(self) -> None:
        """Stop the thread if it still runs, and release the file. Safe to call twice."""
        if self._thread.is_alive():
            self.abort()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
