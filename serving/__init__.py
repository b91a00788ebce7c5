"""Serving predictions: the lifecycle of loaded versions (`manager`, `served`), what runs them
(`runtimes`, on `devices`), dynamic batching (`batching`), the protocol-free `dataplane`, and the
protocol fronts that hold only their wire format (`rest`: TF Serving's `/v1` and the Open
Inference Protocol's `/v2`), with Prometheus `metrics`."""
from __future__ import annotations

from flask import Flask

from hub.auth import Access
from hub.registry import Registry
from schemas.settings import Settings

from . import metrics, rest
from .dataplane import DataPlane
from .manager import ModelManager


def init_app(app: Flask, registry: Registry, access: Access, settings: Settings) -> ModelManager:
    """Mount the prediction APIs and metrics on `app`, and start loading models in the
    background (readiness says when they are loaded)."""
    manager = ModelManager.from_settings(registry, settings)
    rest.init_app(app, DataPlane(manager), access)
    metrics.init_app(app, manager)
    manager.start_in_background()
    return manager
