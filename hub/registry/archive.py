"""SavedModel archives: safe extraction of uploads, and streamed tar.gz output.

Extraction never trusts the archive: every member is checked before a byte is written, files are
created by this code (not `extractall`) inside a staging folder, and size, count and compression
ratio are capped while reading, so a decompression bomb stops early instead of filling the disk.

An archive counts only if it is complete: the compressed stream must end with its trailer
(gzip's CRC and length, bzip2's and xz's end of stream), and the tar must end with its
end-of-archive block. Python's tarfile alone stops quietly at a cut between two members, and does
not check gzip's trailer, so a cut-off upload would otherwise publish a partial version.
"""
from __future__ import annotations

import bz2
import lzma
import tarfile
import time
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from schemas.errors import InvalidModel, TooLarge, UnsafeArchive
from schemas.manifest import is_safe_relative_path
from storage.base import CHUNK_SIZE

DEFAULT_MAX_BYTES = 32 * 1024**3
DEFAULT_MAX_FILES = 10_000
#: Past MIN_RATIO_BYTES of output, an archive may expand at most this many times its compressed
#: size: trained weights barely compress, while a bomb expands a thousand times or more.
DEFAULT_MAX_RATIO = 100
MIN_RATIO_BYTES = 32 * 1024**2
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
    """The member's path relative to the archive's root ("" for the root itself: `.` or `./`,
    as `tarfile.add(folder, arcname=".")` writes it)."""
    name = member.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if name == ".":
        name = ""
    if member.name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"archive member {member.name!r} has an absolute path")
    if ".." in name.split("/"):
        raise UnsafeArchive(f"archive member {member.name!r} points outside the archive ('..')")
    if name and not is_safe_relative_path(name):
        raise UnsafeArchive(f"archive member {member.name!r} has a path that cannot be stored "
                            "and served back (control characters, bytes that are not UTF-8, "
                            "or a name too long)")
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


class _Truncated(Exception):
    pass


class _Corrupt(Exception):
    pass


class _CheckedStream:
    """A tar stream, decompressed if it is compressed (gzip, bzip2, xz: told by magic bytes),
    that fails at the end unless the compressed data ended properly; it also keeps the last
    stretch of tar bytes, so that the end-of-archive block can be checked, and caps the
    compression ratio."""

    KEEP = 64 * 1024

    def __init__(self, raw: BinaryIO, max_ratio: int):
        self._raw = raw
        self._max_ratio = max_ratio
        self.compressed = 0  # bytes read from `raw`
        self.position = 0  # tar bytes handed out
        self._tail = b""  # the last KEEP tar bytes handed out, ending at `position`
        self._pending = b""
        head = self._read_raw(6)
        self._decompressor, self._make = self._kind(head)
        self._buffer = b""
        self._feed(head)
        self._at_end = False

    @staticmethod
    def _kind(head: bytes):
        if head.startswith(b"\x1f\x8b"):
            make = lambda: zlib.decompressobj(wbits=31)  # noqa: E731 - gzip, trailer checked
        elif head.startswith(b"BZh"):
            make = bz2.BZ2Decompressor
        elif head.startswith(b"\xfd7zXZ\x00"):
            make = lzma.LZMADecompressor
        else:
            return None, None
        return make(), make

    def _read_raw(self, size: int) -> bytes:
        data = self._raw.read(size)
        self.compressed += len(data)
        return data

    def _feed(self, data: bytes) -> None:
        if self._decompressor is None:
            self._buffer += data
            return
        while data:
            if self._decompressor.eof:  # a next member of a concatenated stream
                self._decompressor = self._make()
            try:
                out = self._decompressor.decompress(data)
            except (zlib.error, lzma.LZMAError, OSError) as e:  # bz2 raises OSError
                raise _Corrupt(f"the compressed data is corrupt ({e})") from e
            self._buffer += out
            data = self._decompressor.unused_data if self._decompressor.eof else b""

    def read(self, size: int = -1) -> bytes:
        size = CHUNK_SIZE if size is None or size < 0 else size
        while len(self._buffer) < size and not self._at_end:
            data = self._read_raw(CHUNK_SIZE)
            if not data:
                self._at_end = True
                if self._decompressor is not None and not self._decompressor.eof:
                    raise _Truncated("the compressed stream ends before its end marker")
                break
            self._feed(data)
            produced = self.position + len(self._buffer)
            if produced > MIN_RATIO_BYTES and produced > self._max_ratio * self.compressed:
                raise TooLarge(f"the archive expands more than {self._max_ratio} times its "
                               "compressed size: refused as a decompression bomb")
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        self.position += len(out)
        self._tail = (self._tail + out)[-self.KEEP:]
        return out

    def drain(self) -> None:
        """Read to the end, so that a truncated body or compressed stream is noticed."""
        while self.read(CHUNK_SIZE):
            pass

    def tar_bytes(self, start: int, length: int) -> bytes | None:
        """Tar bytes [start, start+length) if they are still in the kept tail."""
        first = self.position - len(self._tail)
        if start < first or start + length > self.position:
            return None
        return self._tail[start - first:start - first + length]


def safe_extract(stream: BinaryIO, staging: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_files: int = DEFAULT_MAX_FILES, max_ratio: int = DEFAULT_MAX_RATIO) -> Path:
    """Extract a tar (optionally gz/bz2/xz) read from `stream` into the empty folder `staging`.

    Returns the SavedModel root inside `staging`. Raises `UnsafeArchive`, `TooLarge` or
    `InvalidModel` (a truncated archive among them); the caller removes `staging` on error.
    """
    staging = staging.resolve()
    total = count = 0
    try:
        checked = _CheckedStream(stream, max_ratio)
        with tarfile.open(fileobj=checked, mode="r|", tarinfo=_BoundedTarInfo) as tar:
            for member in tar:
                count += 1  # first: every entry costs work, folders and the root one too
                if count > max_files:
                    raise TooLarge(f"archive holds more than {max_files} entries")
                _check_type(member)
                name = _member_path(member)
                if not name:
                    continue  # the archive's own root folder entry
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
                written = 0
                with out:
                    while chunk := source.read(CHUNK_SIZE):
                        total += len(chunk)
                        written += len(chunk)
                        if total > max_bytes:
                            raise TooLarge(f"archive expands to more than {max_bytes} bytes")
                        out.write(chunk)
                if written != member.size:
                    raise _Truncated(f"member {member.name!r} is cut short")
            end_of_archive = tar.offset
        # tarfile stops at the first zero block, or quietly at the end of the data: only the
        # first is a complete archive.
        checked.drain()
        if checked.tar_bytes(end_of_archive, tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
            raise _Truncated("the tar has no end-of-archive block")
    except _Truncated as e:
        raise InvalidModel(f"the archive is incomplete ({e}); nothing was published") from None
    except (_Corrupt, tarfile.TarError, EOFError) as e:
        raise InvalidModel(f"not a valid tar or tar.gz archive: {e}") from e
    return saved_model_root(staging)


def tar_gz_chunks(entries: Iterable[tuple[str, int, Iterable[bytes]]], level: int = 1,
                  folders: Iterable[str] = ()) -> Iterator[bytes]:
    """Stream a tar.gz of `(path, size, chunks)` entries, then the empty `folders`, without
    buffering any file.

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
    for folder in folders:
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path not in made_dirs:
                made_dirs.add(path)
                info = tarfile.TarInfo(path)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                yield header(info)
    yield compressor.compress(b"\0" * (2 * tarfile.BLOCKSIZE)) + compressor.flush()
