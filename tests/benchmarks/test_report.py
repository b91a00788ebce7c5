"""The serving benchmark's arithmetic: ratios against the in-process limits and MLServer, and
targets judged PASS or MISS from them."""
from __future__ import annotations

from benchmarks.prediction.measure import Plan
from benchmarks.prediction.report import MH, MLSERVER_ON, evaluate_targets, find, with_ratios

INPROC = {"model": "dense", "results": {
    "batch_1": {"batch": 1, "calls_per_s": 1000.0, "rows_per_s": 1000.0, "p50_ms": 1.0,
                "p99_ms": 2.0},
    "batch_32": {"batch": 32, "calls_per_s": 100.0, "rows_per_s": 3200.0, "p50_ms": 10.0,
                 "p99_ms": 20.0}}}


def record(config: str, fmt: str, conc: int, rate: float, p50: float, cpu_ms: float = 0.2):
    return {"model": "dense", "config": config, "format": fmt, "concurrency": conc,
            "requests_per_s": rate, "rows_per_s": rate, "p50_ms": p50, "p99_ms": p50,
            "mean_ms": p50, "errors": 0, "server_ms_per_request": cpu_ms}


def served(rate: float, p50_c1: float = 1.4) -> list[dict]:
    return [record(MH, "json", 32, rate, 4.0), record(MH, "grpc", 32, rate * 1.3, 3.0),
            record(MH, "v2json", 32, rate * 0.95, 4.2), record(MH, "json", 1, 700.0, p50_c1),
            record(MH, "grpc", 1, 800.0, p50_c1 - 0.1),
            record(MLSERVER_ON, "v2json", 32, 400.0, 30.0)]


def test_ratios_are_against_the_in_process_limits_and_mlserver():
    rows = with_ratios("dense", INPROC, served(1600.0))
    ours = find(rows, MH, "json", 32)
    assert (ours["x_inprocess_b1"], ours["x_inprocess_batched"], ours["x_mlserver"]) == \
        (1.6, 0.5, 4.0)
    assert ours["p50_minus_inprocess_ms"] == 3.0
    assert find(rows, MLSERVER_ON, "v2json", 32)["x_mlserver"] == 1.0


def test_targets_pass_and_miss_by_their_thresholds():
    plan = Plan({"dense": 1, "image": 1}, 0, {"dense": [1, 32], "image": [32]}, 0)

    def results(rate, p50_c1=1.4, slow=None):
        rows = with_ratios("dense", INPROC, served(rate, p50_c1))
        return {t["target"]: t["result"] for t in evaluate_targets({"dense": rows}, plan, slow)}

    passing = results(1600.0)
    assert passing == {
        "dense, json, c=32: rows/s >= 1.0x in-process batch 1": "PASS",
        "dense, json, c=32: >= 2.5x MLServer with adaptive batching": "PASS",
        "dense, grpc, c=32: rows/s >= 1.2x in-process batch 1": "PASS",
        "dense, grpc, c=32: >= 2.5x MLServer with adaptive batching": "PASS",
        "dense, c=32: /v2 JSON within 10% of /v1 JSON": "PASS",
        "dense, json, c=1: p50 <= in-process p50 + 0.6 ms": "PASS",
        "dense, grpc, c=1: p50 <= in-process p50 + 0.6 ms": "PASS",
        "dense, json, c=32: server CPU per request <= 0.35 ms": "PASS"}
    slow = results(800.0, p50_c1=2.0)
    assert slow["dense, json, c=32: rows/s >= 1.0x in-process batch 1"] == "MISS"
    assert slow["dense, json, c=32: >= 2.5x MLServer with adaptive batching"] == "MISS"
    assert slow["dense, json, c=1: p50 <= in-process p50 + 0.6 ms"] == "MISS"
    shed = results(1600.0, slow={"unloaded_rps": 1600.0, "loaded_rps": 1500.0, "errors": 0,
                                 "healthz_max_ms": 30.0, "healthz_failures": 0,
                                 "healthz_checks": 90})
    assert shed["64 slow-header clients: 32 normal clients keep >= 90% of their throughput"] \
        == "PASS"
    assert shed["64 slow-header clients: /healthz answers in < 100 ms"] == "PASS"
