"""Archives built in memory: members one by one (hostile ones included), or a whole folder."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path


def make_tar(*members: tuple[tarfile.TarInfo, bytes | None], gz: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name: str, data: bytes | None = b"x", **attrs) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


SAVED_MODEL = entry("saved_model.pb", b"\x08\x01")


def tar_gz_of(folder: Path) -> bytes:
    """A folder as a tar.gz whose root is the folder's root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()
