"""Prometheus metrics, correct across worker processes.

Every worker counts into prometheus_client's multiprocess files when the server runs several
(`PROMETHEUS_MULTIPROC_DIR`, set by `modelhub serve` before any worker starts), and a scrape of
any worker sums them: requests and latency by model, version, signature, API and status; merged
model calls; errors from inside models by code; and, per version, its state, load and warm-up
times, and whether serving refused it. Gauges take the largest value among live workers.
Served at `/monitoring/prometheus/metrics` (TF Serving's path) by the control plane.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .served import STATES, ServedVersion

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
VERSION_LABELS = ("model", "version")
SIGNATURE_LABELS = ("model", "version", "signature")


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class ServingMetrics:
    def __init__(self):
        # A registry of its own: several apps (tests) may live in one process. In multiprocess
        # mode the values go to the shared files whatever the registry.
        self.registry = CollectorRegistry()
        r = self.registry
        labels = (*SIGNATURE_LABELS, "api")
        self.requests = Counter("modelhub_requests", "Prediction requests", labels + ("status",),
                                registry=r)
        self.latency = Histogram("modelhub_request_latency_seconds", "Prediction request latency",
                                 labels, buckets=LATENCY_BUCKETS, registry=r)
        self.model_errors = Counter("modelhub_model_errors",
                                    "Errors raised inside a model, by TensorFlow status code",
                                    (*SIGNATURE_LABELS, "code"), registry=r)
        self.batches = Counter("modelhub_batch_batches", "Merged model calls", SIGNATURE_LABELS,
                               registry=r)
        self.batch_rows = Counter("modelhub_batch_rows", "Rows run in merged calls",
                                  SIGNATURE_LABELS, registry=r)
        self.batch_padding = Counter("modelhub_batch_padding",
                                     "Padding rows added for allowed_batch_sizes",
                                     SIGNATURE_LABELS, registry=r)
        self.batch_refused = Counter("modelhub_batch_refused",
                                     "Requests refused because the batch queue was full",
                                     SIGNATURE_LABELS, registry=r)
        self.load_seconds = Gauge("modelhub_model_load_seconds", "Time to load a version",
                                  VERSION_LABELS, registry=r, multiprocess_mode="livemax")
        self.warmup_seconds = Gauge("modelhub_model_warmup_seconds",
                                    "Time to warm a version up", VERSION_LABELS, registry=r,
                                    multiprocess_mode="livemax")
        self.state = Gauge("modelhub_model_state", "1 for the state a version is in",
                           (*VERSION_LABELS, "state"), registry=r, multiprocess_mode="livemax")
        self.refused = Gauge("modelhub_model_refused",
                             "1 for a version serving refused because its graph could reach "
                             "outside the model", VERSION_LABELS, registry=r,
                             multiprocess_mode="livemax")

    # --- what the serving code reports -----------------------------------------------------------

    def observe(self, api: str, model: str, version, signature: str, status: int,
                seconds: float) -> None:
        labels = (model, str(version), signature, api)
        self.requests.labels(*labels, str(status)).inc()
        self.latency.labels(*labels).observe(seconds)

    def batch(self, model: str, version: int, signature: str, rows: int, padding: int) -> None:
        labels = (model, str(version), signature)
        self.batches.labels(*labels).inc()
        self.batch_rows.labels(*labels).inc(rows)
        if padding:
            self.batch_padding.labels(*labels).inc(padding)

    def batch_refused_one(self, model: str, version: int, signature: str) -> None:
        self.batch_refused.labels(model, str(version), signature).inc()

    def model_error(self, model: str, version: int, signature: str, code: str) -> None:
        self.model_errors.labels(model, str(version), signature, code).inc()

    def version_changed(self, served: ServedVersion) -> None:
        labels = (served.name, str(served.version))
        for state in STATES:
            self.state.labels(*labels, state).set(1 if served.state == state else 0)
        self.load_seconds.labels(*labels).set(served.load_seconds)
        self.warmup_seconds.labels(*labels).set(served.warmup_seconds)
        self.refused.labels(*labels).set(1 if served.refused else 0)

    # --- the scrape ----------------------------------------------------------------------------

    def exposition(self, shows_model: Callable[[str], bool] | None = None) -> tuple[bytes, str]:
        """The text of a scrape: every worker's values when there are several; with
        `shows_model`, the series of models it refuses are left out."""
        if multiprocess():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            text = generate_latest(registry)
        else:
            text = generate_latest(self.registry)
        if shows_model is not None:
            text = b"".join(line for line in text.splitlines(keepends=True)
                            if not _hidden(line, shows_model))
        return text, CONTENT_TYPE_LATEST


_MODEL_LABEL = re.compile(rb'[{,]model="([^"]*)"')


def _hidden(line: bytes, shows_model: Callable[[str], bool]) -> bool:
    match = _MODEL_LABEL.search(line)
    return bool(match) and not shows_model(match.group(1).decode())
