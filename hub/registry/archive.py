"""SavedModel archives: safe extraction of uploads, and streamed tar.gz output.

Extraction never trusts the archive: every member is checked before a byte is written, files are
created by this code (not `extractall`) inside a staging folder, and size and count are capped
while reading, so a gzip bomb stops at the cap instead of filling the disk.
"""
from __future__ import annotations

import tarfile
import time
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from schemas.errors import InvalidModel, TooLarge, UnsafeArchive
from schemas.manifest import is_safe_relative_path

from storage.base import CHUNK_SIZE

DEFAULT_MAX_BYTES = 32 * 1024**3
DEFAULT_MAX_FILES = 100_000
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
#: Long-name and PAX headers are read whole into memory by tarfile; real ones are tiny.
MAX_HEADER_BYTES = 64 * 1024
_EXTENDED_HEADERS = {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                     tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses extended headers over MAX_HEADER_BYTES before tarfile buffers them (a 400 KB
    upload could otherwise declare a gigabyte-long file name). Hooks tarfile's `_proc_member`,
    the one place every header passes through."""

    def _proc_member(self, tar):
        if self.type in _EXTENDED_HEADERS and self.size > MAX_HEADER_BYTES:
            raise UnsafeArchive(f"archive has a {self.size}-byte extended header; at most "
                                f"{MAX_HEADER_BYTES} bytes are allowed")
        return super()._proc_member(tar)


def _member_path(member: tarfile.TarInfo) -> str:
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if member.name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"archive member {member.name!r} has an absolute path")
    if ".." in name.split("/"):
        raise UnsafeArchive(f"archive member {member.name!r} points outside the archive ('..')")
    if name and not is_safe_relative_path(name):
        raise UnsafeArchive(f"archive member {member.name!r} has an unsafe path")
    return name


def _check_type(member: tarfile.TarInfo) -> None:
    if member.issym():
        raise UnsafeArchive(f"archive member {member.name!r} is a symbolic link; links are not allowed")
    if member.islnk():
        raise UnsafeArchive(f"archive member {member.name!r} is a hard link; links are not allowed")
    if member.isdev():
        raise UnsafeArchive(f"archive member {member.name!r} is a device or FIFO; not allowed")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchive(f"archive member {member.name!r} has unsupported type {member.type!r}")


def saved_model_root(folder: Path) -> Path:
    """The folder itself if it is a SavedModel, or its only subfolder if that one is."""
    if any((folder / f).is_file() for f in SAVED_MODEL_FILES):
        return folder
    children = [c for c in folder.iterdir() if not c.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir():
        if any((children[0] / f).is_file() for f in SAVED_MODEL_FILES):
            return children[0]
    raise InvalidModel("not a SavedModel: no saved_model.pb or saved_model.pbtxt at the root "
                       "(or in a single top-level folder)")


def safe_extract(stream: BinaryIO, staging: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_files: int = DEFAULT_MAX_FILES) -> Path:
    """Extract a tar (optionally gz/bz2/xz) read from `stream` into the empty folder `staging`.

    Returns the SavedModel root inside `staging`. Raises `UnsafeArchive`, `TooLarge` or
    `InvalidModel`; the caller removes `staging` on error.
    """
    staging = staging.resolve()
    total = count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=_BoundedTarInfo) as tar:
            for member in tar:
                _check_type(member)
                name = _member_path(member)
                if not name:
                    continue  # the archive's own root folder entry
                count += 1  # folders count too: they cost inodes as much as files do
                if count > max_files:
                    raise TooLarge(f"archive holds more than {max_files} entries")
                target = staging / name
                if staging not in target.resolve().parents:
                    raise UnsafeArchive(f"archive member {member.name!r} escapes the staging area")
                try:
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    if total + member.size > max_bytes:
                        raise TooLarge(f"archive expands to more than {max_bytes} bytes")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    out = open(target, "xb")
                except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
                    raise UnsafeArchive(f"archive member {member.name!r} appears twice or "
                                        "clashes with another member") from e
                source = tar.extractfile(member)
                with out:
                    while chunk := source.read(CHUNK_SIZE):
                        total += len(chunk)
                        if total > max_bytes:
                            raise TooLarge(f"archive expands to more than {max_bytes} bytes")
                        out.write(chunk)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise InvalidModel(f"not a valid tar or tar.gz archive: {e}") from e
    return saved_model_root(staging)


def tar_gz_chunks(entries: Iterable[tuple[str, int, Iterable[bytes]]],
                  level: int = 1) -> Iterator[bytes]:
    """Stream a tar.gz of `(path, size, chunks)` entries without buffering any file.

    Headers come from `tarfile.TarInfo.tobuf`; the data is compressed as it is produced. Level 1
    because weights barely compress and speed matters more. Parent folders get their own entries
    so any extractor recreates them.
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip container
    now = int(time.time())
    made_dirs: set[str] = set()

    def header(info: tarfile.TarInfo) -> bytes:
        return compressor.compress(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    for path, size, chunks in entries:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in made_dirs:
                made_dirs.add(folder)
                info = tarfile.TarInfo(folder)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                yield header(info)
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = size, 0o644, now
        yield header(info)
        written = 0
        for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise ValueError(f"{path}: more bytes than the {size} announced")
            out = compressor.compress(chunk)
            if out:
                yield out
        if written != size:
            raise ValueError(f"{path}: {written} bytes instead of the {size} announced")
        yield compressor.compress(b"\0" * (-size % tarfile.BLOCKSIZE))
    yield compressor.compress(b"\0" * (2 * tarfile.BLOCKSIZE)) + compressor.flush()
