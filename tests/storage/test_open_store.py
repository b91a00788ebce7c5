"""Choosing a store from a URI."""
from __future__ import annotations

import pytest

from schemas.errors import InvalidStoreURI
from storage import LocalStore, open_store


def test_plain_paths_and_file_uris_open_a_local_store(tmp_path):
    assert isinstance(open_store(str(tmp_path / "a")), LocalStore)
    store = open_store(f"file://{tmp_path}/b")
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / "b"


def test_s3_uris_open_an_s3_store_with_bucket_and_prefix(s3_endpoint):
    from storage.s3 import S3Store

    store = open_store("s3://my-bucket/some/prefix/")
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == ("my-bucket", "some/prefix")


@pytest.mark.parametrize("uri", ["gs://bucket/x", "ftp://host/x"])
def test_unknown_schemes_name_the_known_ones(uri):
    with pytest.raises(InvalidStoreURI, match="known: file://, s3://"):
        open_store(uri)


@pytest.mark.parametrize("uri", ["", "s3://", "file://otherhost/path"])
def test_malformed_uris_are_rejected(uri):
    with pytest.raises(InvalidStoreURI):
        open_store(uri)
