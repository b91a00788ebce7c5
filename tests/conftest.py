"""Shared fixtures: a real S3-protocol server on loopback, stores of every kind, example models."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

# Quiet TensorFlow's C++ logging in every process the tests start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start_s3_server() -> tuple[subprocess.Popen, str]:
    """moto's standalone S3 server in its own process, speaking HTTP on 127.0.0.1."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def s3_endpoint():
    process, endpoint = start_s3_server()
    # boto3's standard configuration; subprocesses started by tests inherit it.
    os.environ.update({
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint) -> str:
    """A fresh bucket per test, so tests never see each other's objects."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def make_store(kind: str, tmp_path: Path, request):
    from storage.local import LocalStore
    from storage.s3 import S3Store

    if kind == "local":
        return LocalStore(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(bucket, prefix="hub")


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The same tests run over every store."""
    return make_store(request.param, tmp_path, request)


@pytest.fixture
def registry(store):
    from hub.registry import Registry

    return Registry(store)


@pytest.fixture(scope="session")
def examples(tmp_path_factory) -> dict[str, Path]:
    """The example SavedModels, built once per session."""
    from hub.examples import build_all

    return build_all(tmp_path_factory.mktemp("examples"))


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `modelhub` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO)


class HubProcess:
    """A real `modelhub serve` process on 127.0.0.1 and the tokens made for it."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path, store: str,
                 tokens: dict[str, str]):
        self.url, self.process, self.log, self.store, self.tokens = url, process, log, store, tokens

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@contextlib.contextmanager
def running_hub(store: str, log: Path, env: dict | None = None, args: tuple[str, ...] = ("--role", "hub")):
    from hub.registry import Registry
    from hub.tokens import TokenStore

    tokens = TokenStore(Registry.open(store).store)
    made = {scope: tokens.create(scope, f"tests: {scope}") for scope in ("read", "write", "admin")}
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "--store", store, "serve", "--port", str(port),
             "--workers", "2", "--threads", "4", *args],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/readyz", process)
        yield HubProcess(url, process, log, store, made)
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (gunicorn finishes in-flight requests), then SIGKILL if it takes too long."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """One hub for the session (tests use their own model names). Uploads are capped at 4 MiB so
    the limit can be shown with small bodies."""
    root = tmp_path_factory.mktemp("hub")
    with running_hub(str(root / "store"), root / "server.log",
                     env={"MODELHUB_MAX_UPLOAD_BYTES": str(4 * 1024 * 1024)}) as server:
        yield server


@pytest.fixture
def unique_name(request) -> str:
    """A model name no other test uses, for tests sharing the session hub."""
    return f"t{uuid.uuid4().hex[:10]}"
