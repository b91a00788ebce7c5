"""Slow clients against a server under load: 64 connections that send their request headers a
few bytes a second (and connect again whenever the server drops them), while 32 normal clients
run the load generator and /healthz is asked every 100 ms. What the normal clients keep of their
throughput without them (measured just before and just after), and how slow /healthz gets, are
the measures."""
from __future__ import annotations

import socket
import threading
import time

from tests.support.processes import Server

from .bodies import Body
from .measure import Plan, run_load, url_of
from tests.support.loadgen import load_command

SLOW_CLIENTS = 64
HEALTH_EVERY_S = 0.1


class _Background:
    """`_run` on a thread of its own for the length of a `with` block; `_stop` tells it to
    end."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        raise NotImplementedError


class Slowloris(_Background):
    """`count` connections, each trickling an endless request head, one small line per second
    per connection; a connection the server closes is opened again."""

    def __init__(self, host: str, port: int, path: str, count: int = SLOW_CLIENTS):
        super().__init__()
        self.address, self.path, self.count = (host, port), path, count
        self.reconnects = 0

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self.address, timeout=2)
            sock.sendall(f"POST {self.path} HTTP/1.1\r\nHost: bench\r\n".encode())
            return sock
        except OSError:
            return None

    def _run(self) -> None:
        sockets = [self._open() for _ in range(self.count)]
        line = 0
        while not self._stop.wait(1.0 / 4):  # a quarter of them each 250 ms: ~1 line/s each
            for i in range(line % 4, self.count, 4):
                sock = sockets[i]
                try:
                    if sock is None:
                        raise OSError
                    sock.sendall(f"X-Slow-{line}: y\r\n".encode())
                except OSError:
                    if sock is not None:
                        sock.close()
                    sockets[i] = self._open()
                    self.reconnects += 1
            line += 1
        for sock in sockets:
            if sock is not None:
                sock.close()


class HealthProbe(_Background):
    """GET /healthz every HEALTH_EVERY_S on a new connection, as a kubelet does."""

    def __init__(self, url: str):
        super().__init__()
        self.url = url
        self.latencies_ms: list[float] = []
        self.failures = 0

    def _run(self) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        while not self._stop.wait(HEALTH_EVERY_S):
            started = time.perf_counter()
            try:  # a bare socket: the probe must not take the CPU it measures
                with socket.create_connection((host, int(port)), timeout=5) as sock:
                    sock.sendall(request)
                    ok = sock.recv(64).startswith(b"HTTP/1.1 200")
            except OSError:
                ok = False
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.failures += not ok


def measure_slow_clients(srv: Server, body: Body, plan: Plan, concurrency: int) -> dict:
    """The normal clients' rate alone, with SLOW_CLIENTS slow ones beside them, and alone again
    (back to back, so all three see the same machine; the rate alone is the mean of the two,
    so that a machine drifting during the three does not count for or against the slow
    clients), and /healthz meanwhile."""
    host, port = srv.url.removeprefix("http://").split(":")
    command, parse = load_command(plan.generator, url_of(srv, body), body.request, concurrency,
                                  plan.durations[body.model])
    before = run_load(command, parse, srv.process.pid)["requests_per_s"]
    with Slowloris(host, int(port), body.request.path) as slow, HealthProbe(srv.url) as probe:
        time.sleep(2.0)  # every slow connection open and trickling
        result = run_load(command, parse, srv.process.pid)
    after = run_load(command, parse, srv.process.pid)["requests_per_s"]
    return {"slow_clients": SLOW_CLIENTS, "concurrency": concurrency,
            "unloaded_rps": (before + after) / 2, "unloaded_before_rps": before,
            "unloaded_after_rps": after, "loaded_rps": result["requests_per_s"],
            "errors": result["errors"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
            "healthz_checks": len(probe.latencies_ms), "healthz_failures": probe.failures,
            "healthz_max_ms": max(probe.latencies_ms, default=None),
            "slow_reconnects": slow.reconnects, "command": " ".join(command)}
