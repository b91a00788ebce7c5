"""Prometheus metrics at `/monitoring/prometheus/metrics` (TF Serving's path)."""
from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily

from .served import STATES

metrics = Blueprint("metrics", __name__)
#: Where the metrics live in `app.extensions`.
EXTENSION = "serving_metrics"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class BatchCollector:
    """The batchers' own counts, read at scrape time: how many batches ran, how many rows they
    carried (rows / batches = the mean batch size), padding added, and requests refused."""

    COUNTS = (("batches", "Merged model calls"), ("rows", "Rows run in merged calls"),
              ("padding", "Padding rows added for allowed_batch_sizes"),
              ("refused", "Requests refused because the batch queue was full"))

    def __init__(self, manager):
        self.manager = manager

    def collect(self):
        labels = ("model", "version", "signature")
        families = {count: CounterMetricFamily(f"modelhub_batch_{count}", text, labels=labels)
                    for count, text in self.COUNTS}
        for name, versions in self.manager.all_models().items():
            for served in versions:
                for signature, batcher in served.batchers.items():
                    for count, family in families.items():
                        family.add_metric((name, str(served.version), signature),
                                          getattr(batcher.stats, count))
        return list(families.values())


class ServingMetrics:
    def __init__(self, manager):
        self.manager = manager
        self.registry = CollectorRegistry()
        self.registry.register(BatchCollector(manager))
        labels = ("model", "version", "signature", "api")
        self.requests = Counter("modelhub_requests", "Prediction requests",
                                labels + ("status",), registry=self.registry)
        self.latency = Histogram("modelhub_request_latency_seconds", "Prediction request latency",
                                 labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.load_seconds = Gauge("modelhub_model_load_seconds", "Time to load a version",
                                  ("model", "version"), registry=self.registry)
        self.warmup_seconds = Gauge("modelhub_model_warmup_seconds", "Time to warm a version up",
                                    ("model", "version"), registry=self.registry)
        self.state = Gauge("modelhub_model_state", "1 for the state a version is in",
                           ("model", "version", "state"), registry=self.registry)
        self.refused = Gauge("modelhub_model_refused",
                             "1 for a version serving refused because its graph could reach "
                             "outside the model", ("model", "version"), registry=self.registry)

    def observe(self, model: str, version, signature: str, api: str, status: int,
                seconds: float) -> None:
        labels = (model, str(version), signature, api)
        self.requests.labels(*labels, str(status)).inc()
        self.latency.labels(*labels).observe(seconds)

    def refresh_models(self) -> None:
        for name, versions in self.manager.all_models().items():
            for served in versions:
                version = str(served.version)
                for state in STATES:
                    self.state.labels(name, version, state).set(1 if served.state == state else 0)
                self.load_seconds.labels(name, version).set(served.load_seconds)
                self.refused.labels(name, version).set(1 if served.refused else 0)
                self.warmup_seconds.labels(name, version).set(served.warmup_seconds)


def init_app(app: Flask, manager) -> None:
    app.extensions[EXTENSION] = ServingMetrics(manager)
    app.register_blueprint(metrics)
    app.after_request(finish)


def record(api: str, served=None, signature: str = "") -> None:
    """Count the current request as a prediction; called again once the version is known."""
    info = g.setdefault("prediction", {"api": api, "started": time.perf_counter(), "model": "",
                                       "version": "", "signature": ""})
    if served is not None:
        info.update(model=served.name, version=served.version, signature=signature)


def finish(response: Response) -> Response:
    info = g.pop("prediction", None)
    if info is not None:
        current_app.extensions[EXTENSION].observe(
            info["model"], info["version"], info["signature"], info["api"], response.status_code,
            time.perf_counter() - info["started"])
    return response


@metrics.get("/monitoring/prometheus/metrics")
def prometheus():
    collected = current_app.extensions[EXTENSION]
    collected.refresh_models()
    return Response(generate_latest(collected.registry), mimetype=CONTENT_TYPE_LATEST)

