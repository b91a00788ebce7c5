"""Ports and real server processes on 127.0.0.1: modelhub itself and moto's S3 server."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


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


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120.0,
                  ready=lambda response: response.status_code == 200) -> None:
    """Poll `url` until `ready(response)`; raise if the process exits first."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was ready")
        try:
            if ready(requests.get(url, timeout=1)):
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (gunicorn finishes in-flight requests), then SIGKILL if it takes too long."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_s3_server() -> tuple[subprocess.Popen, str]:
    """moto's S3 server in its own process, speaking HTTP on 127.0.0.1 (see s3server.py)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.s3server", str(port)], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return process, f"http://127.0.0.1:{port}"


def modelhub_command() -> list[str]:
    """The `modelhub` command of this checkout's environment."""
    return [sys.executable, "-m", "modelhub"]


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `modelhub` command in a subprocess."""
    return subprocess.run([*modelhub_command(), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, cwd=REPO)


@dataclass
class HubProcess:
    """A real `modelhub serve` process on 127.0.0.1 and the tokens made for it."""

    url: str
    process: subprocess.Popen
    log: Path
    store: str
    tokens: dict[str, str]
    grpc_port: int = 0  # 0: gRPC off

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def make_tokens(store: str) -> dict[str, str]:
    """A token of every scope, written straight into the store."""
    from hub.auth import TokenStore, load_secret
    from hub.registry import Registry
    from schemas.settings import load_settings

    registry = Registry.open(store)
    tokens = TokenStore(registry.store, load_secret(registry.store, load_settings({"store": store})))
    return {scope: tokens.create(scope, f"tests: {scope}") for scope in ("read", "write", "admin")}


@contextlib.contextmanager
def running_hub(store: str, log: Path, env: dict | None = None,
                args: tuple[str, ...] = ("--role", "hub"), grpc: bool = False):
    """`modelhub serve` on free ports (gRPC too, when `grpc`), until the block exits."""
    made = make_tokens(store)
    port = free_port()
    grpc_port = free_port() if grpc else 0
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*modelhub_command(), "--store", store, "serve", "--port", str(port),
             "--grpc-port", str(grpc_port), "--workers", "2", "--threads", "4", *args],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/readyz", process)
        yield HubProcess(url, process, log, store, made, grpc_port)
    finally:
        stop_process(process)


@dataclass
class Server:
    """A server process started in its own session, and where it answers."""

    label: str
    url: str
    process: subprocess.Popen
    command: list[str]
    log_path: Path
    grpc_port: int = 0  # 0: it speaks no gRPC

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def server_process(label: str, command: list[str], port: int, log_path: Path, ready,
                   env: dict | None = None, timeout: float = 240.0, cwd: Path = REPO,
                   grpc_port: int = 0):
    """`command` in its own session (so Ctrl-C reaches it only through this cleanup, and its
    whole process group can be stopped: gunicorn's workers, a peer's children), until the block
    exits. It is ready when `ready(url)` is true."""
    import requests

    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
    server = Server(label, url, process, command, log_path, grpc_port)
    started = time.monotonic()
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{label} exited with {process.returncode}:\n"
                                   f"{server.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if ready(url):
                    break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{label} was not ready after {timeout:g} s:\n"
                                   f"{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, timeout: float = 40.0) -> None:
    """SIGTERM to the process group, then SIGKILL to what is left after `timeout`; a second
    SIGTERM to this process meanwhile must not skip it."""
    import signal

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
