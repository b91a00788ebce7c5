"""Files on local disk: a SavedModel folder's files, staged writes that appear whole or not at
all, checking bytes against recorded digests, and transfers run side by side."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from schemas.errors import IntegrityError, InvalidArgument, InvalidModel

#: Transfers are I/O bound, and hashlib releases the GIL while it hashes.
TRANSFER_THREADS = 8

T = TypeVar("T")
R = TypeVar("R")


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


def empty_folders(root: Path) -> list[str]:
    """The folders under `root` that hold no file, at any depth (a SavedModel's `assets/` often
    is one): a version records them, so a pulled tree equals the published one."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if not filenames and not dirnames and Path(dirpath) != Path(root):
            found.append(Path(dirpath).relative_to(root).as_posix())
    return sorted(found)


@contextlib.contextmanager
def staged_folder(dest: str | Path) -> Iterator[Path]:
    """An empty folder beside `dest` to fill; it becomes `dest` only if the block finishes, so
    nothing half-written ever appears at `dest`. `dest` must not exist or be an empty folder."""
    dest = Path(dest).absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidArgument(f"destination {dest} already exists and is not empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        yield staging
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_file(dest: str | Path, *, exclusive: bool = False) -> Iterator[Path]:
    """A temp file beside `dest`, unique to this call, to fill; it becomes `dest` (atomically:
    readers see the old file or the whole new one) only if the block finishes. `exclusive`: never
    replace an existing `dest` (link() fails atomically where an exists-check then rename could
    overwrite a file made in between)."""
    dest = Path(dest).absolute()
    if dest.is_dir():
        raise InvalidArgument(f"destination {dest} is a folder, not a file")
    if exclusive and dest.exists():
        raise InvalidArgument(f"destination {dest} already exists")  # before any download
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        yield temp
        if not exclusive:
            os.replace(temp, dest)
            return
        try:
            os.link(temp, dest)
        except FileExistsError:
            raise InvalidArgument(f"destination {dest} already exists") from None
    finally:
        temp.unlink(missing_ok=True)


def check_digest(label: str, sha256: str, size: int, actual: tuple[str, int]) -> None:
    """Raise `IntegrityError` unless `actual` (sha256, size) is what was recorded."""
    actual_sha256, actual_size = actual
    if actual_size != size:
        raise IntegrityError(f"{label} is corrupted: {actual_size} bytes instead of {size}")
    if actual_sha256 != sha256:
        raise IntegrityError(
            f"{label} is corrupted: sha256 {actual_sha256} does not match the recorded {sha256}")


def verified_chunks(chunks: Iterable[bytes], sha256: str, size: int, label: str) -> Iterator[bytes]:
    """Pass chunks through, raising `IntegrityError` before the last one if they do not hash to
    `sha256`: an HTTP client then sees a body shorter than its Content-Length, never a complete
    wrong file."""
    digest = hashlib.sha256()
    seen = 0
    held = None  # the last chunk waits for the check, so a corrupted file never arrives whole
    for chunk in chunks:
        digest.update(chunk)
        seen += len(chunk)
        if seen > size:
            raise IntegrityError(f"{label} is corrupted: more than the {size} bytes recorded")
        if held is not None:
            yield held
        held = chunk
    check_digest(label, sha256, size, (digest.hexdigest(), seen))
    if held is not None:
        yield held


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """Map `fn` over `items` on threads, in order; the first error cancels what has not started."""
    items = list(items)
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(TRANSFER_THREADS, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
