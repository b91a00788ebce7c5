"""The serving benchmark's arithmetic: ratios against the in-process limits and bare Flask, and
targets judged PASS or MISS from them."""
from __future__ import annotations

from benchmarks.prediction.measure import Plan
from benchmarks.prediction.report import BARE, MH_ON, MLFLOW, evaluate_targets, find, with_ratios

INPROC = {"model": "dense", "results": {
    "batch_1": {"batch": 1, "calls_per_s": 1000.0, "rows_per_s": 1000.0, "p50_ms": 1.0,
                "p99_ms": 2.0},
    "batch_32": {"batch": 32, "calls_per_s": 100.0, "rows_per_s": 3200.0, "p50_ms": 10.0,
                 "p99_ms": 20.0}}}


def served(rate_on: float) -> list[dict]:
    return [{"model": "dense", "config": c, "format": "json", "concurrency": 32,
             "requests_per_s": rate, "rows_per_s": rate, "p50_ms": p50, "p99_ms": p50,
             "mean_ms": p50, "errors": 0}
            for c, rate, p50 in ((BARE, 800.0, 5.0), (MH_ON, rate_on, 4.0), (MLFLOW, 16.0, 900.0))]


def test_ratios_are_against_the_in_process_limits_and_bare_flask():
    on = find(with_ratios("dense", INPROC, served(1600.0)), MH_ON, "json", 32)
    assert (on["x_inprocess_b1"], on["x_inprocess_batched"], on["x_bare"]) == (1.6, 0.5, 2.0)
    assert on["p50_minus_inprocess_ms"] == 3.0


def test_targets_pass_and_miss_by_their_thresholds():
    plan = Plan({"dense": 1, "image": 1}, 0, {"dense": [32], "image": [32]}, 0)

    def results(rate):
        rows = with_ratios("dense", INPROC, served(rate))
        return {t["target"]: t["result"] for t in evaluate_targets({"dense": rows}, plan)
                if t["config"] == MH_ON}

    assert results(1600.0) == {"dense, json, c=32: rows/s >= 1.0x in-process batch 1": "PASS",
                               "dense, json, c=32: req/s >= 0.9x bare Flask": "PASS",
                               "dense, json, c=32: >= 2x MLflow's rows/s and a lower p50": "PASS"}
    assert set(results(500.0).values()) == {"MISS", "PASS"}  # below batch 1 and bare Flask
