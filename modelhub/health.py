"""Liveness and readiness: `/healthz` (the process answers) and `/readyz` (it can do its job:
the store answers and, where this process serves predictions, its models are loaded, in every
worker of the server)."""
from __future__ import annotations

import logging

from flask import Blueprint, Flask

from hub.registry import Registry
from schemas.errors import ModelhubError
from serving.manager import ModelManager

from .rundir import RunDir

log = logging.getLogger(__name__)

LIVE = {"status": "live"}


def init_app(app: Flask, registry: Registry, manager: ModelManager | None,
             run_dir: RunDir | None = None) -> None:
    health = Blueprint("health", __name__)

    @health.get("/healthz")
    def live():
        return LIVE

    @health.get("/readyz")
    def ready():
        try:
            registry.check()
        except ModelhubError as e:
            log.warning("not ready: %s", e)  # the details stay in the log
            return {"status": "not ready", "reason": "the store does not answer"}, 503
        if manager is not None and not manager.ready():
            return {"status": "not ready", "reason": "models are still loading"}, 503
        if run_dir is not None and not run_dir.all_ready():
            return {"status": "not ready", "reason": "other workers are still starting"}, 503
        return {"status": "ready"}

    app.register_blueprint(health)
