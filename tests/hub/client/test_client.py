"""The client side of a hub: SDK, CLI with --hub, tensorflow_hub, the cache, resume, offline."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from hub.client import ERRORS_BY_CODE, HubClient, ModelCache
from schemas.errors import (
    AliasNotFound,
    Forbidden,
    HubUnavailable,
    ModelNotFound,
    NotCached,
    Unauthorized,
    all_error_classes,
)
from tests.support.processes import REPO, free_port, run_cli, running_hub


def predict_half_plus_two(model, values):
    import tensorflow as tf

    out = model.signatures["serving_default"](x=tf.constant(values, dtype=tf.float32))
    return out["y"].numpy()


@pytest.fixture
def client(hub_server, tmp_path):
    return HubClient(hub_server.url, hub_server.tokens["write"], cache=tmp_path / "cache")


def test_sdk_publishes_a_folder_and_loads_it_back(client, examples, unique_name):
    manifest = client.publish(examples["image_classifier"], unique_name, description="cnn",
                              aliases=["prod"])
    assert manifest["version"] == 1
    import tensorflow as tf

    model = client.load(f"{unique_name}@prod")
    images = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    original = tf.saved_model.load(str(examples["image_classifier"]))
    np.testing.assert_array_equal(
        model.signatures["serving_default"](image=tf.constant(images))["output_0"].numpy(),
        original.signatures["serving_default"](image=tf.constant(images))["output_0"].numpy())


def test_hub_load_reads_url_and_token_from_the_environment(client, examples, unique_name,
                                                           hub_server, monkeypatch, tmp_path):
    client.publish(examples["half_plus_two"], unique_name)
    monkeypatch.setenv("MODELHUB_URL", hub_server.url)
    monkeypatch.setenv("MODELHUB_CACHE", str(tmp_path / "env-cache"))
    import hub

    model = hub.load(unique_name)
    np.testing.assert_allclose(predict_half_plus_two(model, [2.0, 4.0]), [3.0, 4.0])
    assert (tmp_path / "env-cache" / "snapshots" / unique_name / "1" / "saved_model.pb").is_file()


def test_the_cli_publishes_and_pulls_through_a_hub(hub_server, examples, unique_name, tmp_path):
    env = {"MODELHUB_URL": hub_server.url, "MODELHUB_TOKEN": hub_server.tokens["write"],
           "MODELHUB_CACHE": str(tmp_path / "cache"), "MODELHUB_STORE": "/nonexistent"}
    published = run_cli("publish", str(examples["half_plus_two"]), "--name", unique_name,
                        "--alias", "prod", env=env)
    assert published.returncode == 0, published.stderr
    assert published.stdout == f"{unique_name}/1\n"
    listing = run_cli("ls", unique_name, env=env)
    assert listing.stdout.splitlines()[1].split() == [unique_name, "1", "1", "prod", "safe"]
    as_json = run_cli("ls", unique_name, "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    (summary,) = json.loads(as_json.stdout)
    assert summary["name"] == unique_name and summary["updated"].startswith("20")
    pulled = run_cli("pull", f"{unique_name}@prod", "-o", str(tmp_path / "out"), env=env)
    assert pulled.returncode == 0, pulled.stderr
    original = examples["half_plus_two"]
    for path in original.rglob("*"):
        if path.is_file():
            assert (tmp_path / "out" / path.relative_to(original)).read_bytes() == path.read_bytes()
    refused = run_cli("rm", f"{unique_name}/1", env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: ") and "Traceback" not in refused.stderr
    token = run_cli("token", "create", "--scope", "read",
                    env={**env, "MODELHUB_TOKEN": hub_server.tokens["admin"]})
    assert token.returncode == 0 and token.stdout.strip().startswith("mh_")


def test_the_real_tensorflow_hub_package_loads_a_published_version(client, examples, unique_name,
                                                                   hub_server, tmp_path,
                                                                   monkeypatch):
    client.publish(examples["half_plus_two"], unique_name, aliases=["prod"])
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    import tensorflow_hub

    for suffix in ("1", "prod"):
        model = tensorflow_hub.load(f"{hub_server.url}/models/{unique_name}/{suffix}")
        np.testing.assert_allclose(predict_half_plus_two(model, [0.0, 10.0]), [2.0, 7.0])


def test_server_errors_become_typed_exceptions(client, hub_server, examples, unique_name, tmp_path):
    with pytest.raises(ModelNotFound):
        client.get("never-published")
    client.publish(examples["half_plus_two"], unique_name)
    with pytest.raises(AliasNotFound):
        client.get(f"{unique_name}@nope")
    with pytest.raises(Forbidden):
        client.delete_version(unique_name, 1)
    with pytest.raises(Unauthorized):
        HubClient(hub_server.url, cache=tmp_path / "c").publish(examples["half_plus_two"], "x")
    with pytest.raises(HubUnavailable, match="cannot reach the hub"):
        HubClient(f"http://127.0.0.1:{free_port()}", cache=tmp_path / "c").get("x")
    assert "token" not in repr(client) and hub_server.tokens["write"] not in repr(client)


def test_every_error_code_maps_to_exactly_one_class():
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))
    assert all(ERRORS_BY_CODE[cls.code] is cls for cls in all_error_classes())


# --- a connection cut mid-file ------------------------------------------------------------------


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 that, the first time a request for `target` passes, forwards
    only `cut_after` bytes of the answer and then drops the connection."""

    def __init__(self, upstream_port: int, target: str, cut_after: int):
        self.upstream_port, self.target, self.cut_after = upstream_port, target.encode(), cut_after
        self.requests: list[bytes] = []
        self.statuses: list[bytes] = []
        self.cut = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        cutting = threading.Event()

        def client_to_upstream():
            try:
                while data := client.recv(65536):
                    self.requests.append(data)
                    if self.target in data and not self.cut:
                        self.cut = True
                        cutting.set()
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=client_to_upstream, daemon=True).start()
        sent = 0
        try:
            while data := upstream.recv(65536):
                if data.startswith(b"HTTP/1.1 "):
                    self.statuses.append(data[9:12])
                if cutting.is_set():
                    data = data[:max(0, self.cut_after - sent)]
                    sent += len(data)
                client.sendall(data)
                if cutting.is_set() and sent >= self.cut_after:
                    break
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:  # shutdown, not just close: another thread is blocked reading this socket
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_download_cut_mid_file_resumes_and_ends_byte_identical(hub_server, unique_name, tmp_path):
    from hub.examples import build_large

    source = build_large(tmp_path / "model", 3)  # one 3 MiB weights file (the hub takes 4 MiB)
    HubClient(hub_server.url, hub_server.tokens["write"], cache=tmp_path / "c1").publish(
        source, unique_name)
    port = int(hub_server.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, "variables.data", cut_after=1024 * 1024)
    try:
        reader = HubClient(f"http://127.0.0.1:{proxy.port}", cache=tmp_path / "c2")
        reader.pull(unique_name, tmp_path / "out")
    finally:
        proxy.close()
    assert proxy.cut
    assert any(b"Range: bytes=" in r and b"variables.data" in r for r in proxy.requests)
    assert b"206" in proxy.statuses  # the rest came as a range, not from the start
    weights = "variables/variables.data-00000-of-00001"
    assert (tmp_path / "out" / weights).read_bytes() == (source / weights).read_bytes()


# --- offline and concurrent use of one cache ----------------------------------------------------


def test_a_cached_version_loads_with_the_server_stopped_and_offline_mode(examples, tmp_path,
                                                                         unique_name, monkeypatch):
    cache = tmp_path / "cache"
    with running_hub(str(tmp_path / "store"), tmp_path / "server.log") as server:
        online = HubClient(server.url, server.tokens["write"], cache=cache)
        online.publish(examples["half_plus_two"], unique_name, aliases=["prod"])
        online.fetch(f"{unique_name}@prod")
        url = server.url
    script = ("import hub, tensorflow as tf; "
              f"m = hub.load('{unique_name}@prod'); "
              "print(m.signatures['serving_default'](x=tf.constant([4.0]))['y'].numpy()[0])")
    env = {**os.environ, "MODELHUB_URL": url, "MODELHUB_CACHE": str(cache), "MODELHUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4.0"

    offline_client = HubClient(url, cache=cache, offline=True)
    manifest, _ = offline_client.fetch(unique_name)  # "latest" as last seen online
    assert manifest["version"] == 1
    with pytest.raises(NotCached):
        offline_client.fetch(f"{unique_name}@never-seen")


def test_a_version_counts_as_cached_only_when_every_file_is_there(client, examples, unique_name,
                                                                  monkeypatch):
    client.publish(examples["half_plus_two"], unique_name)
    manifest, folder = client.fetch(unique_name)
    cache: ModelCache = client.cache
    assert cache.complete_snapshot(manifest) == folder
    (folder / "variables" / "variables.index").unlink()
    assert cache.complete_snapshot(manifest) is None
    with pytest.raises(NotCached):
        HubClient(client.url, cache=cache, offline=True).fetch(f"{unique_name}/1")
    _, again = client.fetch(f"{unique_name}/1")  # online: repaired
    assert (again / "variables" / "variables.index").is_file()


PULL = """
import sys, time
from hub.client import HubClient
url, cache, ref, dest, start_at = sys.argv[1:6]
client = HubClient(url, cache=cache)
time.sleep(max(0.0, float(start_at) - time.time()))
client.pull(ref, dest)
"""


def test_eight_processes_pulling_into_one_cache_leave_one_correct_copy(hub_server, unique_name,
                                                                       tmp_path):
    from hub.examples import build_large

    source = build_large(tmp_path / "model", 2)
    HubClient(hub_server.url, hub_server.tokens["write"], cache=tmp_path / "c0").publish(
        source, unique_name)
    cache = tmp_path / "shared-cache"
    start_at = time.time() + 3
    processes = [subprocess.Popen(
        [sys.executable, "-c", PULL, hub_server.url, str(cache), f"{unique_name}/1",
         str(tmp_path / f"out{i}"), str(start_at)], cwd=REPO, stderr=subprocess.PIPE, text=True)
        for i in range(8)]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert all(p.returncode == 0 for p in processes), errors

    manifest = HubClient(hub_server.url, cache=cache).get(f"{unique_name}/1")
    blobs = sorted(p for p in (cache / "blobs").rglob("*") if p.is_file())
    assert sorted(p.name for p in blobs) == sorted({f["sha256"] for f in manifest["files"]})
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    snapshots = list((cache / "snapshots" / unique_name).iterdir())
    assert [s.name for s in snapshots] == ["1"]  # no temp folders left behind
    for i in range(8):
        for entry in manifest["files"]:
            data = (tmp_path / f"out{i}" / entry["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_empty_folders_survive_a_round_trip_through_a_hub(client, examples, unique_name, tmp_path):
    import shutil

    source = tmp_path / "model"
    shutil.copytree(examples["half_plus_two"], source)
    (source / "assets").mkdir(exist_ok=True)
    assert client.publish(source, unique_name)["folders"] == ["assets"]
    client.pull(unique_name, tmp_path / "out")
    assert (tmp_path / "out" / "assets").is_dir()
    assert sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*")) == \
        sorted(p.relative_to(source) for p in source.rglob("*"))
