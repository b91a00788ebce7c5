"""Serving predictions: the lifecycle of loaded versions (`manager`, `served`), what runs them
(`runtimes`, on `devices`), dynamic batching (`batching`), the protocol-free `dataplane`, and the
protocol fronts that hold only their wire format (`rest`: TF Serving's `/v1` and the Open
Inference Protocol's `/v2` over HTTP; `grpc`: both over gRPC), with Prometheus `metrics`."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Flask, Response, request

from hub.auth import Access, bearer_token
from hub.registry import Registry
from schemas.manifest import namespace_of
from schemas.settings import Settings

from .dataplane import DataPlane
from .manager import ModelManager
from .metrics import ServingMetrics
from .rest import PredictionFront

#: TF Serving's path for Prometheus metrics.
METRICS_PATH = "/monitoring/prometheus/metrics"


@dataclass(frozen=True)
class Serving:
    """The serving side of one process: its models, the data plane every protocol calls, and
    the metrics."""

    manager: ModelManager
    dataplane: DataPlane
    metrics: ServingMetrics
    access: Access
    settings: Settings

    def rest_front(self) -> PredictionFront:
        return PredictionFront(self.dataplane, self.access, self.settings.max_content_length)


def build(registry: Registry, access: Access, settings: Settings) -> Serving:
    """The serving side, its models not loaded yet (`manager.start_in_background()`)."""
    metrics = ServingMetrics()
    manager = ModelManager.from_settings(registry, settings, metrics)
    return Serving(manager, DataPlane(manager, metrics, access), metrics, access, settings)


def init_app(app: Flask, serving: Serving) -> None:
    """Mount the metrics on the control plane (Flask): a scrape needs read access, like the
    model names and traffic it shows, and shows only the models the caller may read."""
    blueprint = Blueprint("metrics", __name__)

    @blueprint.get(METRICS_PATH)
    def prometheus_metrics():
        access = serving.access
        caller = access.require(bearer_token(request.headers.get("Authorization")), "read")
        body, content_type = serving.metrics.exposition(
            lambda name: access.can_read(caller, namespace_of(name)))
        return Response(body, content_type=content_type)

    app.register_blueprint(blueprint)
