"""Versions come and go while requests flow: hot reload, alias moves, failed loads, export."""
from __future__ import annotations

import shutil
import threading
import time

import pytest
import requests

from hub.registry import Registry
from tests.support.grpc_calls import half_plus_request, prediction_stub, y_values
from tests.support.models import half_plus
from tests.support.processes import run_cli, running_hub


class LoadGenerator:
    """Threads calling a model in a bounded loop, over REST or gRPC, counting every failure."""

    def __init__(self, server, model: str, label: str | None = None, grpc: bool = False,
                 threads: int = 4, limit_seconds: float = 120):
        self.failures, self.answers = [], []
        self._call = self._grpc_caller(server, model, label) if grpc else \
            self._rest_caller(server, model, label)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit_seconds
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _rest_caller(server, model: str, label: str | None):
        url = f"{server.url}/v1/models/{model}{f'/labels/{label}' if label else ''}:predict"
        session = requests.Session()

        def call() -> float:
            response = session.post(url, json={"instances": [2.0]}, timeout=30)
            if response.status_code != 200:
                raise RuntimeError(response.text)
            return response.json()["predictions"][0]

        return call

    @staticmethod
    def _grpc_caller(server, model: str, label: str | None):
        import grpc

        stub = prediction_stub(grpc.insecure_channel(server.grpc_target))
        request = half_plus_request(model, 2.0, label=label)

        def call() -> float:
            return y_values(stub.Predict(request, timeout=30))[0]

        return call

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                self.answers.append(self._call())
            except Exception as e:  # requests' and gRPC's errors alike
                self.failures.append(repr(e))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def reloading_server(tmp_path, examples):
    store = str(tmp_path / "store")
    registry = Registry.open(store)
    registry.publish(half_plus(tmp_path / "plus2", 2.0), "hpt", aliases=["prod"])
    broken = tmp_path / "broken"
    shutil.copytree(examples["half_plus_two"], broken)
    shutil.rmtree(broken / "variables")  # publishes fine, cannot load
    registry.publish(broken, "broken")
    env = {"MODELHUB_SERVING_CACHE": str(tmp_path / "cache")}
    with running_hub(store, tmp_path / "server.log", env=env,
                     args=("--role", "all", "--poll-seconds", "0.3", "--workers", "1"),
                     grpc=True) as server:
        yield server, registry


def test_new_versions_and_alias_moves_cause_no_failed_request(reloading_server, tmp_path):
    """Under mixed REST and gRPC load, by version and by label."""
    server, registry = reloading_server
    latest = [LoadGenerator(server, "hpt", threads=2),
              LoadGenerator(server, "hpt", grpc=True, threads=2)]
    labelled = [LoadGenerator(server, "hpt", "prod", threads=2),
                LoadGenerator(server, "hpt", "prod", grpc=True, threads=2)]
    everyone = latest + labelled
    try:
        wait_until(lambda: all(len(g.answers) > 20 for g in everyone))
        registry.publish(half_plus(tmp_path / "plus3", 3.0), "hpt")  # 0.5 * 2 + 3 = 4
        wait_until(lambda: all(g.answers[-1] == 4.0 for g in latest))
        status = requests.get(f"{server.url}/v1/models/hpt").json()["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "AVAILABLE")]
        assert all(g.answers[-1] == 3.0 for g in labelled)  # prod still points to version 1

        registry.set_alias("hpt", "prod", 2)
        wait_until(lambda: all(g.answers[-1] == 4.0 for g in labelled))
        wait_until(lambda: requests.get(f"{server.url}/v1/models/hpt/versions/1").json()
                   ["model_version_status"][0]["state"] == "END")
        counts = [len(g.answers) for g in everyone]
        wait_until(lambda: all(len(g.answers) > n + 20 for g, n in zip(everyone, counts)))
    finally:
        for generator in everyone:
            generator.stop()
    assert [g.failures for g in everyone] == [[], [], [], []]
    assert all(set(g.answers) == {3.0, 4.0} for g in latest)


def test_a_version_that_fails_to_load_is_end_with_its_error(reloading_server):
    server, _ = reloading_server
    status = requests.get(f"{server.url}/v1/models/broken").json()["model_version_status"][0]
    assert status["state"] == "END"
    assert status["status"]["error_code"] == "UNKNOWN" and status["status"]["error_message"]
    failed = requests.post(f"{server.url}/v1/models/broken:predict", json={"instances": [1.0]})
    assert failed.status_code == 503 and "error" in failed.json()
    works = requests.post(f"{server.url}/v1/models/hpt:predict", json={"instances": [1.0]})
    assert works.json() == {"predictions": [2.5]}
    assert requests.get(f"{server.url}/readyz").status_code == 200  # --all: others still ready


def test_export_writes_a_tf_serving_model_base_path(tmp_path, examples):
    store = str(tmp_path / "store")
    Registry.open(store).publish(examples["half_plus_two"], "hpt")
    Registry.open(store).publish(examples["half_plus_two"], "hpt")
    result = run_cli("--store", store, "export", "hpt/2", "--layout", "tf-serving",
                     str(tmp_path / "base"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "base" / "hpt" / "2" / "saved_model.pb").is_file()
    assert (tmp_path / "base" / "hpt" / "2" / "variables" / "variables.index").is_file()
