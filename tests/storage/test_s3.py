"""S3Store specifics: streamed multipart uploads in bounded memory, and unreachable endpoints."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from schemas.errors import StoreUnavailable
from storage.s3 import S3Store
from tests.support.processes import REPO, free_port

UPLOAD_SCRIPT = textwrap.dedent("""
    import hashlib, os, resource, sys
    from storage.s3 import S3Store

    size, chunk = int(sys.argv[2]), 8 * 1024 * 1024
    block = os.urandom(1024 * 1024)

    class Generated:
        # A stream of `size` bytes that never exists in memory as a whole.
        def __init__(self):
            self.left, self.digest = size, hashlib.sha256()
        def read(self, n=-1):
            n = self.left if n is None or n < 0 else min(n, self.left)
            data = (block * (n // len(block) + 1))[:n]
            self.left -= n
            self.digest.update(data)
            return data

    store = S3Store(sys.argv[1], multipart_threshold=chunk, multipart_chunk_size=chunk)
    store.head  # client created, imports done
    store.list_keys("")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stream = Generated()
    info = store.put("big.bin", stream)
    after_upload = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    back = hashlib.sha256()
    for part in store.open("big.bin"):
        back.update(part)
    print(info.size, after_upload - before, stream.digest.hexdigest() == back.hexdigest())
""")


def test_large_file_round_trips_via_multipart_with_memory_well_below_its_size(s3_bucket):
    size = 200 * 1024 * 1024
    result = subprocess.run([sys.executable, "-c", UPLOAD_SCRIPT, s3_bucket, str(size)],
                            capture_output=True, text=True, cwd=REPO, timeout=240)
    assert result.returncode == 0, result.stderr
    stored, grew, identical = result.stdout.split()
    assert int(stored) == size
    assert identical == "True"
    # Parts are 8 MiB and at most ~8 are in memory at once; a whole-file buffer would be 200 MiB.
    assert int(grew) < size // 2, f"upload grew RSS by {int(grew) / 2**20:.0f} MiB"


def test_multipart_upload_is_used_above_the_threshold(s3_bucket):
    store = S3Store(s3_bucket, multipart_threshold=5 * 1024 * 1024,
                    multipart_chunk_size=5 * 1024 * 1024)
    data = bytes(range(256)) * (12 * 4096)  # 12 MiB -> 3 parts
    store.put_bytes("mp", data)
    etag = store.head("mp").etag
    assert etag.strip('"').endswith("-3"), etag  # S3's multipart etags end in -<part count>
    assert store.get_bytes("mp") == data


def test_unreachable_endpoint_is_store_unavailable(monkeypatch, s3_endpoint):
    import boto3
    from botocore.config import Config

    dead = f"http://127.0.0.1:{free_port()}"
    client = boto3.client("s3", endpoint_url=dead,
                          config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    store = S3Store("some-bucket", client=client)
    with pytest.raises(StoreUnavailable, match="cannot reach the S3 endpoint"):
        store.put_bytes("k", b"x")
    with pytest.raises(ConnectionError):
        store.head("k")


def test_missing_bucket_is_a_clear_error(s3_endpoint):
    from schemas.errors import StoreError

    store = S3Store("no-such-bucket-here")
    with pytest.raises(StoreError, match="does not exist"):
        store.put_bytes("k", b"x")
