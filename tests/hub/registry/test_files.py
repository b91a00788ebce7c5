"""Staged writes appear whole or not at all, and an exclusive one never replaces a file."""
from __future__ import annotations

import pytest

from hub.registry.files import staged_file
from schemas.errors import InvalidArgument


def test_an_exclusive_staged_file_never_replaces_one_made_meanwhile(tmp_path):
    dest = tmp_path / "out.tar.gz"
    with pytest.raises(InvalidArgument, match="already exists"):
        with staged_file(dest, exclusive=True) as temp:
            temp.write_bytes(b"ours")
            dest.write_bytes(b"theirs")  # another process got there between check and rename
    assert dest.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tar.gz"]  # no temp file left


def test_a_failed_block_leaves_nothing_and_a_finished_one_replaces(tmp_path):
    dest = tmp_path / "file"
    with pytest.raises(RuntimeError):
        with staged_file(dest) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("cut")
    assert not dest.exists()
    dest.write_bytes(b"old")
    with staged_file(dest) as temp:
        temp.write_bytes(b"new")
    assert dest.read_bytes() == b"new"
