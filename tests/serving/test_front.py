"""The prediction front of a real `modelhub serve`: slow and hostile clients are shed by their
timeouts and limits without stopping anyone else; several workers share the metrics and the
connections; REST and gRPC share the batchers; SIGTERM drains both."""
from __future__ import annotations

import contextlib
import os
import re
import socket
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support.grpc_calls import half_plus_request, prediction_stub, y_values
from tests.support.processes import running_hub

PREDICT = "/v1/models/half_plus_two:predict"


@pytest.fixture(scope="module")
def front_server(serving_store, tmp_path_factory):
    """Two workers with short header and body timeouts (and one allowed batch size, which a
    round trip of the settings through the environment once broke)."""
    root = tmp_path_factory.mktemp("front")
    with running_hub(serving_store, root / "server.log",
                     env={"MODELHUB_SERVING_CACHE": str(root / "cache")},
                     args=("--role", "serving", "--models", "half_plus_two", "--workers", "2",
                           "--header-timeout", "1", "--body-timeout", "1", "--device", "cpu",
                           "--max-header-bytes", "8192", "--max-headers", "50",
                           "--allowed-batch-sizes", "32"),
                     grpc=True) as server:
        yield server


@pytest.fixture(scope="module")
def patient_server(serving_store, tmp_path_factory):
    """One worker whose batches wait up to a second to fill: requests stay in flight. It shows
    TensorFlow's native log."""
    root = tmp_path_factory.mktemp("patient")
    with running_hub(serving_store, root / "server.log",
                     env={"MODELHUB_SERVING_CACHE": str(root / "cache"),
                          "TF_CPP_MIN_LOG_LEVEL": "0"},
                     args=("--role", "serving", "--models", "half_plus_two", "--workers", "1",
                           "--batch-timeout-micros", "1000000", "--max-batch-size", "64",
                           "--device", "cpu"),
                     grpc=True) as server:
        yield server


def address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def predict(server, value: float = 1.0, session=requests) -> float:
    response = session.post(f"{server.url}{PREDICT}", json={"instances": [value]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def grpc_predict(server, value: float = 1.0) -> float:
    import grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        response = prediction_stub(channel).Predict(
            half_plus_request("half_plus_two", value), timeout=30)
    return y_values(response)[0]


def metric(server, name: str, **labels) -> float:
    """The sum of a counter over the series that have these labels."""
    text = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match[1]))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match[2])
    return total


def read_until_closed(sock: socket.socket, limit: float) -> bytes:
    """What the server sends before it closes the connection (b"" if it sends nothing)."""
    sock.settimeout(limit)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(4096):
            received += chunk
    return received


# --- slow and hostile clients -----------------------------------------------------------------

def test_slow_clients_hold_no_one_up_and_are_shed_by_their_timeouts(front_server):
    host, port = address(front_server)
    idle, partial, trickling = [], [], []
    try:
        for _ in range(24):  # connect and say nothing
            idle.append(socket.create_connection((host, port), timeout=5))
        for _ in range(24):  # half the headers
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: {host}\r\n".encode())
            partial.append(sock)
        for _ in range(16):  # whole headers, then a body that never comes
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                         "application/json\r\nContent-Length: 1000\r\n\r\n{\"ins".encode())
            trickling.append(sock)
        # 64 slow clients, more than the control plane has threads: everyone else is served
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda v: predict(front_server, v), [1.0] * 32))
        assert answers == [2.5] * 32
        health = time.monotonic()
        assert requests.get(f"{front_server.url}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - health < 0.1
        assert time.monotonic() - started < 10

        # ...and the timeouts (1 s here) shed them
        for sock in idle:
            assert read_until_closed(sock, 5) == b""
        for sock in partial:
            assert read_until_closed(sock, 5).startswith(b"HTTP/1.1 408 ")
        for sock in trickling:
            assert read_until_closed(sock, 5).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in idle + partial + trickling:
            sock.close()


def test_an_idle_keep_alive_connection_does_not_stop_others(front_server):
    with requests.Session() as session:
        assert predict(front_server, 2.0, session) == 3.0  # the connection stays open, idle
        assert predict(front_server, 4.0) == 4.0
        assert predict(front_server, 6.0, session) == 5.0


@pytest.mark.parametrize("headers, reason", [
    ({"X-Big": "a" * 20_000}, "one header over the byte limit"),
    ({f"X-H{i}": "1" for i in range(60)}, "more fields than the limit"),
])
def test_headers_over_the_limits_are_answered_431(front_server, headers, reason):
    host, port = address(front_server)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n{lines}\r\n".encode())
        assert read_until_closed(sock, 5).startswith(b"HTTP/1.1 431 "), reason
    assert requests.get(f"{front_server.url}/healthz", timeout=5).status_code == 200


def test_an_endless_header_line_is_cut_off(front_server):
    host, port = address(front_server)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Endless: ".encode())
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(64):  # 64 KiB, never a line end
                sock.sendall(b"a" * 1024)
        assert read_until_closed(sock, 5).startswith(b"HTTP/1.1 431 ")


# --- several workers -----------------------------------------------------------------------

def worker_pids(server) -> list[int]:
    pid = server.process.pid
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    return [int(p) for p in children]


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_metrics_sum_over_the_workers_and_connections_spread(front_server):
    workers = worker_pids(front_server)
    assert len(workers) == 2
    labels = dict(api="tfserving", model="half_plus_two", status="200")
    before = metric(front_server, "modelhub_requests_total", **labels)
    cpu_before = {pid: cpu_seconds(pid) for pid in workers}

    def client(i: int) -> int:  # 32 keep-alive clients, each on its own connection
        with requests.Session() as session:
            for _ in range(15):
                assert predict(front_server, float(i), session) == i / 2 + 2
        return 15

    with ThreadPoolExecutor(32) as pool:
        sent = sum(pool.map(client, range(32)))
    used = {pid: cpu_seconds(pid) - cpu_before[pid] for pid in workers}
    total = sum(used.values())
    assert all(share > 0.15 * total for share in used.values()), used  # no worker sat idle

    # Each scrape is answered by one worker, and every one of them sums all workers' counts.
    scrapes = {metric(front_server, "modelhub_requests_total", **labels) - before
               for _ in range(6)}
    assert scrapes == {sent}


def test_readyz_means_every_worker_is_ready(front_server):
    assert requests.get(f"{front_server.url}/readyz", timeout=5).json() == {"status": "ready"}


def test_tensorflows_native_log_is_quiet_unless_asked_for(front_server, patient_server):
    quiet, chatty = front_server.log_text(), patient_server.log_text()
    assert "Booting worker" in quiet and "Application startup complete" in quiet
    assert "oneDNN" not in quiet and "I0000" not in quiet and "absl::InitializeLog" not in quiet
    assert "oneDNN" in chatty  # TF_CPP_MIN_LOG_LEVEL=0 brings it back


# --- REST and gRPC together --------------------------------------------------------------------

def test_rest_and_grpc_requests_share_one_batch(patient_server):
    labels = dict(model="half_plus_two", version="1", signature="serving_default")
    batches = metric(patient_server, "modelhub_batch_batches_total", **labels)
    rows = metric(patient_server, "modelhub_batch_rows_total", **labels)
    with ThreadPoolExecutor(4) as pool:
        rest = [pool.submit(predict, patient_server, 2.0), pool.submit(predict, patient_server, 4.0)]
        grpc_calls = [pool.submit(grpc_predict, patient_server, 6.0),
                      pool.submit(grpc_predict, patient_server, 8.0)]
        assert [f.result() for f in rest + grpc_calls] == [3.0, 4.0, 5.0, 6.0]
    assert metric(patient_server, "modelhub_batch_rows_total", **labels) - rows == 4
    # all four waited in the batch that the first started: one model call (two at most, if the
    # first ran before the others arrived)
    assert metric(patient_server, "modelhub_batch_batches_total", **labels) - batches <= 2
    requests_by_api = {api: metric(patient_server, "modelhub_requests_total", api=api,
                                   status="200") for api in ("tfserving", "tfserving_grpc")}
    assert requests_by_api["tfserving"] >= 2 and requests_by_api["tfserving_grpc"] >= 2


def test_sigterm_lets_in_flight_rest_and_grpc_requests_finish(patient_server):
    """Last in this module: the server stops."""
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(predict, patient_server, float(i)) for i in range(4)]
        futures += [pool.submit(grpc_predict, patient_server, float(i)) for i in range(4)]
        time.sleep(0.4)  # every request is in, waiting for its batch to fill (1 s)
        patient_server.process.send_signal(signal.SIGTERM)
        assert [f.result(timeout=30) for f in futures] == [i / 2 + 2 for i in range(4)] * 2
    assert patient_server.process.wait(timeout=30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{patient_server.url}/healthz", timeout=5)
