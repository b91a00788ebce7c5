"""`LocalStore`: the default store, a folder on a local disk.

Every write goes to a unique temp file beside its target, is fsync'ed, then renamed into place, so
readers see the old object or the new one and never a torn one. Create-only writes use `link()`,
which fails atomically if the target exists, across processes. Compare-and-swap holds an `flock`
on a lock file beside the key for the read-compare-rename.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from schemas.errors import (
    IntegrityError,
    ModelhubError,
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    StoreAccessDenied,
    StoreError,
)

from .base import CHUNK_SIZE, ObjectInfo, ObjectStore, check_key, check_prefix
from .hashing import TrailingHasher, fingerprint

TEMP_PREFIX = ".tmp-"
LOCK_PREFIX = ".lock-"


@contextlib.contextmanager
def _translated(key: str):
    """The one place OS errors become the project's store errors, naming the key and carrying
    the errno's name (ENOSPC, EACCES, ...) as `backend_code`."""
    try:
        yield
    except ModelhubError:
        raise  # already ours (some of ours are OSErrors too)
    except OSError as e:
        code = {"backend_code": errno.errorcode.get(e.errno or 0)}
        if isinstance(e, FileNotFoundError):
            raise ObjectNotFound(f"no object at {key!r}", **code) from e
        if isinstance(e, PermissionError):
            raise StoreAccessDenied(f"permission denied for {key!r}: {e}", **code) from e
        if e.errno == errno.ENOSPC:
            raise StoreError(f"store is out of space while writing {key!r}", **code) from e
        raise StoreError(f"store I/O error on {key!r}: {e}", **code) from e


#: sendfile() moves at most this much per call, so progress can be reported in between.
SENDFILE_CHUNK = 64 * 1024 * 1024


def _sendfile_all(src, out, on_progress: Callable[[int], None] | None) -> None:
    offset, size = 0, os.fstat(src.fileno()).st_size
    while offset < size:
        sent = os.sendfile(out.fileno(), src.fileno(), offset, min(SENDFILE_CHUNK, size - offset))
        if sent == 0:
            break  # the file shrank while we copied; the caller's checks will notice
        offset += sent
        if on_progress:
            on_progress(sent)


def _temp_in(directory: Path) -> Path:
    """A temp file name unique to this process and call; dot-led, so listing never shows it."""
    return directory / f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"


def _etag(st: os.stat_result) -> str:
    # Every write renames a new inode into place, so inode + mtime + size changes on every write
    # without reading the content.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    modified = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)
    return ObjectInfo(key=key, size=st.st_size, etag=_etag(st), modified=modified)


class LocalStore(ObjectStore):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        self.uri = f"file://{self.root}"
        with _translated(""):
            self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    # --- writing ------------------------------------------------------------------------------

    def _write_temp(self, path: Path, stream: BinaryIO) -> Path:
        """Copy `stream` into a new, fsync'ed temp file beside `path`; return the temp path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = _temp_in(path.parent)
        try:
            with open(temp, "xb") as out:
                buffer = bytearray(CHUNK_SIZE)
                view = memoryview(buffer)
                readinto = getattr(stream, "readinto", None)
                while True:
                    if readinto is not None:
                        n = readinto(buffer)
                        chunk = view[:n] if n else b""
                    else:
                        chunk = stream.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return temp

    def _copy_into_temp(self, temp: Path, source: str | os.PathLike,
                        on_progress: Callable[[int], None] | None) -> None:
        """Copy a local file into `temp` with the kernel (sendfile: no trip through Python
        buffers) and fsync it."""
        with open(source, "rb") as src, open(temp, "wb") as out:
            _sendfile_all(src, out, on_progress)
            os.fsync(out.fileno())

    def put_file(self, key: str, path: str | os.PathLike,
                 on_progress: Callable[[int], None] | None = None) -> ObjectInfo:
        target = self._path(key)
        with _translated(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = _temp_in(target.parent)
            try:
                self._copy_into_temp(temp, path, on_progress)
                os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
            self._sync_dir(target.parent)
            return _info(key, target.stat())

    def put_content_addressed(self, path: str | os.PathLike, key_for: Callable[[str], str],
                              on_progress: Callable[[int], None] | None = None) -> tuple[str, int]:
        # Copy into a temp file while a second thread hashes the bytes that landed there, then
        # rename it to its digest's key: one pass over the data instead of hash-then-copy.
        with _translated(str(path)):
            before = fingerprint(path)
            parent = self.root / "incoming"  # any folder in the store: only the rename target matters
            parent.mkdir(parents=True, exist_ok=True)
            temp = _temp_in(parent)
            hasher = TrailingHasher(temp, on_progress)
            try:
                self._copy_into_temp(temp, path, hasher.advance)
                digest, size = hasher.finish()
                if fingerprint(path) != before:
                    raise IntegrityError(f"{path} changed while it was being stored")
                target = self._path(key_for(digest))
                target.parent.mkdir(parents=True, exist_ok=True)
                # Even when the blob exists: the rename refreshes its time (gc grace) and
                # replaces a copy that may have rotted with bytes just verified.
                os.replace(temp, target)
                self._sync_dir(target.parent)
                return digest, size
            finally:
                hasher.close()
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()

    def get_file(self, key: str, path: str | os.PathLike,
                 on_progress: Callable[[int], None] | None = None) -> None:
        source = self._path(key)
        with _translated(key), open(source, "rb") as src, open(path, "wb") as out:
            _sendfile_all(src, out, on_progress)

    def _sync_dir(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def put(self, key: str, stream: BinaryIO) -> ObjectInfo:
        path = self._path(key)
        with _translated(key):
            temp = self._write_temp(path, stream)
            os.replace(temp, path)
            self._sync_dir(path.parent)
            return _info(key, path.stat())

    def _create(self, key: str, path: Path, data: bytes) -> ObjectInfo:
        temp = self._write_temp(path, io.BytesIO(data))
        try:
            # link() refuses to replace an existing file, atomically, even across processes and
            # NFS clients; rename() would silently overwrite.
            os.link(temp, path)
        except FileExistsError as e:
            raise ObjectExists(f"object {key!r} already exists") from e
        finally:
            temp.unlink()
        self._sync_dir(path.parent)
        return _info(key, path.stat())

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        path = self._path(key)
        with _translated(key):
            return self._create(key, path, data)

    @contextlib.contextmanager
    def _locked(self, path: Path):
        """An exclusive lock for `path`'s compare-and-swap, on a lock file beside it. Cleanup may
        remove an unlocked lock file at any time, so after taking the lock, check that the file
        locked is still the one at that path; if not, take the new one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.parent / f"{LOCK_PREFIX}{path.name}"
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # removed by cleanup while we waited: lock the new one
        try:
            yield
        finally:
            os.close(fd)

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> ObjectInfo:
        path = self._path(key)
        with _translated(key), self._locked(path):
            if etag is None:
                try:
                    return self._create(key, path, data)
                except ObjectExists as e:
                    raise PreconditionFailed(f"object {key!r} already exists") from e
            try:
                current = _etag(path.stat())
            except FileNotFoundError as e:
                raise PreconditionFailed(f"object {key!r} no longer exists") from e
            if current != etag:
                raise PreconditionFailed(f"object {key!r} changed since it was read")
            temp = self._write_temp(path, io.BytesIO(data))
            os.replace(temp, path)
            self._sync_dir(path.parent)
            return _info(key, path.stat())

    # --- reading ------------------------------------------------------------------------------

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        with _translated(key):
            f = open(path, "rb")
        return self._chunks(key, f, start, end)

    @staticmethod
    def _chunks(key: str, f, start: int, end: int | None) -> Iterator[bytes]:
        with f, _translated(key):
            f.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                chunk = f.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def read_with_etag(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        with _translated(key), open(path, "rb") as f:
            # fstat on the open file: a concurrent rename replaces the path, not this inode.
            return f.read(), _etag(os.fstat(f.fileno()))

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with _translated(key):
            return _info(key, path.stat())

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        with _translated(prefix or "/"):
            found = self._walk(prefix)
        for key, st in found:
            yield _info(key, st)

    def _walk(self, prefix: str) -> list[tuple[str, os.stat_result]]:
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = self.root / base if base else self.root
        found: list[tuple[str, os.stat_result]] = []

        def walk_error(error: OSError) -> None:
            # A folder that vanished is just empty; one that cannot be read must not list as
            # empty (gc would take "no manifests" for an answer).
            if not isinstance(error, FileNotFoundError):
                raise error

        for dirpath, dirnames, filenames in os.walk(top, onerror=walk_error):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if name.startswith("."):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    found.append((key, os.stat(os.path.join(dirpath, name))))
                except FileNotFoundError:
                    continue  # deleted while we walked
        found.sort(key=lambda item: item[0])
        return found

    # --- maintenance --------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        path = self._path(key)
        with _translated(key), contextlib.suppress(FileNotFoundError):
            path.unlink()

    def touch(self, key: str) -> None:
        path = self._path(key)
        with _translated(key):
            os.utime(path)

    def cleanup_incomplete(self, older_than: datetime) -> int:
        """Temp files of writes that died, and lock files nobody holds, older than the cutoff."""
        cutoff = older_than.timestamp()
        removed = 0
        with _translated("/"):
            for dirpath, _, filenames in os.walk(self.root):
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    with contextlib.suppress(FileNotFoundError):
                        if os.stat(path).st_mtime >= cutoff:
                            continue
                        if name.startswith(TEMP_PREFIX):
                            os.unlink(path)
                            removed += 1
                        elif name.startswith(LOCK_PREFIX) and self._remove_unheld_lock(path):
                            removed += 1
        return removed

    @staticmethod
    def _remove_unheld_lock(path: str) -> bool:
        """Remove a lock file if nobody holds it (see `_locked` for why that is safe)."""
        fd = os.open(path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use
            os.unlink(path)
            return True
        finally:
            os.close(fd)
