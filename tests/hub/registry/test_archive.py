"""Hostile archives are refused with a clear message, and nothing lands outside the staging area."""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from hub.registry import Registry
from hub.registry.archive import safe_extract
from schemas.errors import InvalidModel, TooLarge, UnsafeArchive
from storage import LocalStore
from tests.support.archives import SAVED_MODEL, entry, make_tar


HOSTILE = {
    "absolute path": ([SAVED_MODEL, entry("/tmp/evil")], "absolute path"),
    "dot-dot": ([SAVED_MODEL, entry("../outside/evil")], "outside the archive"),
    "nested dot-dot": ([SAVED_MODEL, entry("variables/../../outside/evil")], "outside the archive"),
    "symlink": ([SAVED_MODEL, entry("link", None, type=tarfile.SYMTYPE, linkname="/etc/passwd")],
                "symbolic link"),
    "hard link": ([SAVED_MODEL, entry("hard", None, type=tarfile.LNKTYPE, linkname="/etc/passwd")],
                  "hard link"),
    "char device": ([SAVED_MODEL, entry("dev", None, type=tarfile.CHRTYPE)], "device"),
    "block device": ([SAVED_MODEL, entry("blk", None, type=tarfile.BLKTYPE)], "device"),
    "fifo": ([SAVED_MODEL, entry("fifo", None, type=tarfile.FIFOTYPE)], "FIFO"),
    "duplicate": ([SAVED_MODEL, entry("saved_model.pb", b"again")], "appears twice"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_members_are_refused_and_nothing_escapes(kind, tmp_path):
    members, message = HOSTILE[kind]
    staging = tmp_path / "area" / "staging"
    staging.mkdir(parents=True)
    with pytest.raises(UnsafeArchive, match=message):
        safe_extract(io.BytesIO(make_tar(*members)), staging)
    assert not (tmp_path / "area" / "outside").exists()
    assert not Path("/tmp/evil").exists()
    assert sorted(p.name for p in (tmp_path / "area").iterdir()) == ["staging"]


def test_too_many_files_is_too_large(tmp_path):
    members = [SAVED_MODEL] + [entry(f"variables/f{i}") for i in range(20)]
    with pytest.raises(TooLarge, match="more than 10 entries"):
        safe_extract(io.BytesIO(make_tar(*members)), tmp_path, max_files=10)


def test_a_gzip_bomb_stops_at_the_size_cap(tmp_path):
    bomb = make_tar(SAVED_MODEL, entry("variables/zeros", b"\0" * (8 * 1024 * 1024)))
    assert len(bomb) < 64 * 1024  # tiny on the wire
    with pytest.raises(TooLarge, match="more than 1048576 bytes"):
        safe_extract(io.BytesIO(bomb), tmp_path, max_bytes=1024 * 1024)


@pytest.mark.parametrize("payload,message", [
    (b"this is not an archive at all", "not a valid tar"),
    (gzip.compress(b"not a tar inside")[:-10], "incomplete"),
    (make_tar(entry("variables/only")), "no saved_model.pb"),
])
def test_broken_or_incomplete_archives_are_invalid_models(payload, message, tmp_path):
    with pytest.raises(InvalidModel, match=message):
        safe_extract(io.BytesIO(payload), tmp_path)


def test_a_plain_tar_with_a_top_folder_is_accepted(tmp_path):
    payload = make_tar(entry("model/", None, type=tarfile.DIRTYPE),
                       entry("model/saved_model.pb", b"pb"),
                       entry("model/variables/variables.index", b"ix"), gz=False)
    root = safe_extract(io.BytesIO(payload), tmp_path)
    assert root == tmp_path.resolve() / "model"
    assert (root / "variables" / "variables.index").read_bytes() == b"ix"


def test_publishing_a_hostile_archive_stores_nothing(tmp_path):
    registry = Registry(LocalStore(tmp_path / "store"))
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(make_tar(SAVED_MODEL, entry("../../escaped")))
    with pytest.raises(UnsafeArchive):
        registry.publish(archive, "evil")
    assert registry.store.list_keys("") == []
    assert not (tmp_path / "escaped").exists()


def test_an_oversized_extended_header_is_refused_before_it_is_buffered(tmp_path):
    long_name = "x" * (8 * 1024 * 1024)  # an 8 MiB file name: a GNU long-name header
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(long_name)
        tar.addfile(info, io.BytesIO(b""))
    assert len(buffer.getvalue()) < 64 * 1024
    with pytest.raises(UnsafeArchive, match="8388609-byte extended header"):
        safe_extract(io.BytesIO(buffer.getvalue()), tmp_path)


def test_folders_count_toward_the_entry_limit(tmp_path):
    members = [SAVED_MODEL] + [entry(f"d{i}/", None, type=tarfile.DIRTYPE) for i in range(50)]
    with pytest.raises(TooLarge, match="more than 10 entries"):
        safe_extract(io.BytesIO(make_tar(*members)), tmp_path, max_files=10)
    assert len(list(tmp_path.iterdir())) <= 10


def test_a_file_then_a_path_through_it_is_unsafe_not_a_crash(tmp_path):
    payload = make_tar(SAVED_MODEL, entry("a", b"file"), entry("a/b", b"under a file"))
    with pytest.raises(UnsafeArchive, match="clashes"):
        safe_extract(io.BytesIO(payload), tmp_path)


def streamed_tar_gz(folder: Path) -> bytes:
    """The tar.gz the client streams for a folder."""
    from hub.registry.archive import tar_gz_chunks
    from hub.registry.files import scan_folder

    return b"".join(tar_gz_chunks((f.path, f.size, [f.source.read_bytes()])
                                  for f in scan_folder(folder)))


@pytest.mark.parametrize("compressed", [True, False])
def test_every_cut_off_prefix_of_an_archive_is_refused(examples, tmp_path, compressed):
    whole = streamed_tar_gz(examples["half_plus_two"])
    if not compressed:
        whole = gzip.decompress(whole)
    assert safe_extract(io.BytesIO(whole), tmp_path / "whole").is_dir()
    # Every cut that keeps whole members (the dangerous ones) and a sample of the rest.
    cuts = set(range(512, len(whole), 512)) | set(range(1, len(whole), max(1, len(whole) // 300)))
    cuts |= set(range(len(whole) - 64, len(whole)))  # the gzip trailer and the end blocks
    accepted = []
    for i, cut in enumerate(sorted(c for c in cuts if 0 < c < len(whole))):
        staging = tmp_path / f"cut{i}"
        staging.mkdir()
        try:
            safe_extract(io.BytesIO(whole[:cut]), staging)
        except InvalidModel:
            continue
        accepted.append(cut)
    if not compressed:
        # a plain tar may lose only its padding after the end-of-archive block
        end = whole.rstrip(b"\0")
        assert all(cut >= len(end) + 512 for cut in accepted), accepted[:5]
    else:
        assert accepted == [], accepted[:5]


def test_the_archive_root_may_be_written_as_dot(tmp_path, examples):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(examples["half_plus_two"], arcname=".")  # tar's own way: ./, ./saved_model.pb
    root = safe_extract(io.BytesIO(buffer.getvalue()), tmp_path)
    assert (root / "saved_model.pb").is_file() and root == tmp_path.resolve()


@pytest.mark.parametrize("name", ["variables/a\nb", "x" * 5000, "deep/" + "y" * 300,
                                  "bad\udcff-bytes"])
def test_names_that_cannot_be_stored_or_served_back_are_refused(tmp_path, name):
    with pytest.raises(UnsafeArchive, match="cannot be stored and served back"):
        safe_extract(io.BytesIO(make_tar(SAVED_MODEL, entry(name))), tmp_path)


def test_a_decompression_bomb_is_refused_early_by_its_ratio(tmp_path):
    from hub.registry.archive import MIN_RATIO_BYTES

    bomb = make_tar(SAVED_MODEL, entry("variables/zeros", bytes(200 * 1024 * 1024)))
    assert len(bomb) < 1024 * 1024  # a few hundred KB
    with pytest.raises(TooLarge, match="decompression bomb"):
        safe_extract(io.BytesIO(bomb), tmp_path)
    written = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert written <= MIN_RATIO_BYTES + 2 * 1024 * 1024


def test_entries_are_counted_before_any_work_per_entry(tmp_path):
    many = make_tar(SAVED_MODEL, *(entry(f"f{i}", b"") for i in range(20_000)))
    with pytest.raises(TooLarge, match="entries"):
        safe_extract(io.BytesIO(many), tmp_path)
    assert sum(1 for _ in tmp_path.rglob("*")) <= 10_000  # refused at the count, not later
