"""Real processes against one store: racing publishers, and a publisher killed mid-upload."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest

from hub.registry import Registry
from tests.support.processes import REPO, modelhub_command

PUBLISH_AT = textwrap.dedent("""
    import sys, time
    from hub.registry import Registry

    uri, path, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    registry = Registry.open(uri)
    registry.store.list_keys("models/")  # connect before the start line
    time.sleep(max(0.0, start_at - time.time()))
    print(registry.publish(path, "same")["version"])
""")


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    return f"s3://{request.getfixturevalue('s3_bucket')}/hub"


def test_eight_processes_publishing_one_name_get_versions_one_to_eight(store_uri, examples):
    start_at = time.time() + 4  # every process is imported and waiting by then
    processes = [subprocess.Popen(
        [sys.executable, "-c", PUBLISH_AT, store_uri, str(examples["half_plus_two"]), str(start_at)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) for _ in range(8)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err for _, err in outputs]
    won = sorted(int(out) for out, _ in outputs)
    assert won == list(range(1, 9))
    registry = Registry.open(store_uri)
    assert registry.versions("same") == list(range(1, 9))
    assert all(registry.get(f"same/{v}")["version"] == v for v in won)


@pytest.fixture(scope="module")
def large_model(tmp_path_factory):
    """A real SavedModel with 256 MB of weights."""
    from hub.examples import build_large

    return build_large(tmp_path_factory.mktemp("large") / "large", 256)


def upload_in_flight(registry: Registry) -> bool:
    store = registry.store
    if hasattr(store, "client"):
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        return bool(uploads)
    for dirpath, _, files in os.walk(store.root):
        for name in files:
            if name.startswith(".tmp-") and os.path.getsize(os.path.join(dirpath, name)) > 0:
                return True
    return False


def test_a_publisher_killed_mid_upload_leaves_no_version(store_uri, large_model, tmp_path):
    registry = Registry.open(store_uri)
    publisher = subprocess.Popen(
        [*modelhub_command(), "--store", store_uri, "-q", "publish", str(large_model),
         "--name", "big"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not upload_in_flight(registry):
        assert publisher.poll() is None, "publish ended before it could be interrupted"
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.005)
    os.kill(publisher.pid, signal.SIGKILL)
    publisher.wait(timeout=10)

    assert registry.model_names() == []
    assert registry.list_models() == []

    manifest = registry.publish(large_model, "big")
    assert manifest["version"] == 1
    report = registry.gc(timedelta(0))
    assert report["removed_incomplete"] >= 1  # the dead upload's leftovers
    assert report["removed_blobs"] == 0  # everything else is referenced
    registry.pull("big/1", tmp_path / "pulled")  # verifies every byte
    assert (tmp_path / "pulled" / "saved_model.pb").is_file()
