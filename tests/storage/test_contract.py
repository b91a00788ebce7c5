"""One contract, every store: LocalStore on a temp folder, S3Store over HTTP to a real S3 server."""
from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta, timezone

import pytest

from schemas.errors import (
    InvalidKey,
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
)


def test_put_then_get_returns_the_same_bytes(store):
    info = store.put("a/b.bin", io.BytesIO(b"hello world"))
    assert info.size == 11
    assert store.get_bytes("a/b.bin") == b"hello world"
    assert store.head("a/b.bin").etag == info.etag


def test_put_replaces_and_changes_the_etag(store):
    first = store.put_bytes("k", b"one")
    second = store.put_bytes("k", b"two, longer")
    assert store.get_bytes("k") == b"two, longer"
    assert first.etag != second.etag
    assert store.head("k").size == len(b"two, longer")


def test_byte_ranges_and_streaming(store):
    data = bytes(range(256)) * 9000  # > 2 MiB, so streaming yields several chunks
    store.put_bytes("big", data)
    assert store.get_bytes("big", 10, 20) == data[10:20]
    assert store.get_bytes("big", len(data) - 5) == data[-5:]
    assert store.get_bytes("big", len(data)) == b""
    assert store.get_bytes("big", 5, 5) == b""
    chunks = list(store.open("big"))
    assert len(chunks) > 1
    assert b"".join(chunks) == data


def test_missing_keys_raise_not_found_which_is_also_a_file_not_found_error(store):
    for call in (lambda: store.get_bytes("nope"), lambda: store.head("nope"),
                 lambda: store.read_with_etag("nope"), lambda: store.touch("nope")):
        with pytest.raises(ObjectNotFound):
            call()
    with pytest.raises(FileNotFoundError):
        store.head("nope")
    assert not store.exists("nope")


def test_delete_removes_and_deleting_a_missing_key_is_fine(store):
    store.put_bytes("x", b"1")
    store.delete("x")
    assert not store.exists("x")
    store.delete("x")


def test_list_by_prefix_in_key_order(store):
    for key in ["m/b/2", "m/a/1", "m/a/3", "n/1", "m-sibling"]:
        store.put_bytes(key, key.encode())
    assert store.list_keys("m/") == ["m/a/1", "m/a/3", "m/b/2"]
    assert store.list_keys("m/a") == ["m/a/1", "m/a/3"]
    assert store.list_keys("") == sorted(["m/b/2", "m/a/1", "m/a/3", "n/1", "m-sibling"])
    assert store.list_keys("zzz/") == []
    infos = {i.key: i for i in store.list("m/")}
    assert infos["m/a/1"].size == 5
    assert infos["m/a/1"].modified.tzinfo is not None


def test_list_follows_pagination(store):
    if hasattr(store, "list_page_size"):
        store.list_page_size = 2  # force several LIST requests
    keys = [f"p/{i:02d}" for i in range(7)]
    for key in keys:
        store.put_bytes(key, b"x")
    assert store.list_keys("p/") == keys


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "../x", ".hidden", "a/.tmp-1",
                                 "a\\b", "a/./b"])
def test_invalid_keys_are_rejected(store, key):
    with pytest.raises(InvalidKey):
        store.put_bytes(key, b"x")


def test_create_only_put_refuses_an_existing_key(store):
    store.put_if_absent("once", b"first")
    with pytest.raises(ObjectExists):
        store.put_if_absent("once", b"second")
    with pytest.raises(FileExistsError):
        store.put_if_absent("once", b"third")
    assert store.get_bytes("once") == b"first"


def test_compare_and_swap(store):
    created = store.put_if_match("alias", b"v1", None)
    with pytest.raises(PreconditionFailed):
        store.put_if_match("alias", b"v1 again", None)  # None = must not exist
    data, etag = store.read_with_etag("alias")
    assert (data, etag) == (b"v1", created.etag)
    moved = store.put_if_match("alias", b"v2", etag)
    with pytest.raises(PreconditionFailed):
        store.put_if_match("alias", b"v3", etag)  # stale etag
    assert store.get_bytes("alias") == b"v2"
    assert store.read_with_etag("alias")[1] == moved.etag
    with pytest.raises(PreconditionFailed):
        store.put_if_match("missing", b"x", moved.etag)


def test_racing_create_only_writers_have_exactly_one_winner(store):
    winners, barrier = [], threading.Barrier(8)

    def writer(i: int) -> None:
        barrier.wait()
        try:
            store.put_if_absent("race", str(i).encode())
            winners.append(i)
        except ObjectExists:
            pass

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.get_bytes("race") == str(winners[0]).encode()


def test_compare_and_swap_loses_no_update_under_contention(store):
    store.put_bytes("counter", b"0")

    def increment(times: int) -> None:
        for _ in range(times):
            while True:
                data, etag = store.read_with_etag("counter")
                try:
                    store.put_if_match("counter", str(int(data) + 1).encode(), etag)
                    break
                except PreconditionFailed:
                    continue

    threads = [threading.Thread(target=increment, args=(5,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_bytes("counter") == b"20"


def test_touch_refreshes_the_modification_time(store):
    store.put_bytes("t", b"x")
    before = store.head("t").modified
    import time
    time.sleep(1.1)  # S3 timestamps have one-second resolution
    store.touch("t")
    assert store.head("t").modified > before
    assert store.get_bytes("t") == b"x"


def test_cleanup_incomplete_removes_only_old_leftovers(store):
    store.put_bytes("keep", b"x")
    if hasattr(store, "client"):  # S3: a multipart upload that was never completed
        store.client.create_multipart_upload(Bucket=store.bucket, Key=store._full("dead"))
    else:  # local: a temp file left by a killed writer
        (store.root / ".tmp-999-dead").write_bytes(b"partial")
    now = datetime.now(timezone.utc)
    if not hasattr(store, "client"):
        # moto reports every multipart upload as initiated in 2010, so "too young to remove"
        # can only be shown on the local store.
        assert store.cleanup_incomplete(now - timedelta(hours=1)) == 0
    assert store.cleanup_incomplete(now + timedelta(seconds=5)) == 1
    assert store.cleanup_incomplete(now + timedelta(seconds=5)) == 0
    assert store.get_bytes("keep") == b"x"


def test_store_errors_form_one_hierarchy(store):
    with pytest.raises(StoreError):
        store.head("missing")


def test_cleanup_leaves_no_lock_files_and_locking_still_excludes(tmp_path):
    from datetime import datetime, timedelta, timezone

    from storage.local import LOCK_PREFIX, LocalStore

    store = LocalStore(tmp_path / "store")
    store.put_if_match("a/b", b"1", None)
    _, etag = store.read_with_etag("a/b")
    store.put_if_match("a/b", b"2", etag)
    assert any(p.name.startswith(LOCK_PREFIX) for p in (tmp_path / "store").rglob("*"))
    store.cleanup_incomplete(datetime.now(timezone.utc) + timedelta(seconds=1))
    assert not any(p.name.startswith(LOCK_PREFIX) for p in (tmp_path / "store").rglob("*"))
    _, etag = store.read_with_etag("a/b")
    store.put_if_match("a/b", b"3", etag)  # a new lock file, and the swap still works
    assert store.get_bytes("a/b") == b"3"
