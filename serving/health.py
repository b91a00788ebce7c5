"""Liveness and readiness: `/healthz` (the process answers) and `/readyz` (it can do its job)."""
from __future__ import annotations

import logging

from flask import Blueprint, Flask, current_app

from schemas.errors import ModelhubError

log = logging.getLogger(__name__)
health = Blueprint("health", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(health)


@health.get("/healthz")
def live():
    return {"status": "live"}


@health.get("/readyz")
def ready():
    registry = current_app.extensions["modelhub.registry"]
    try:
        registry.check()
    except ModelhubError as e:
        log.warning("not ready: %s", e)  # the details stay in the log
        return {"status": "not ready", "reason": "the store does not answer"}, 503
    manager = current_app.extensions.get("modelhub.manager")
    if manager is not None and not manager.ready():
        return {"status": "not ready", "reason": "models are still loading"}, 503
    return {"status": "ready"}
