"""The modelhub web application, assembled: `create_app(settings)` builds it.

This is the composition root: the one place that knows every part. The roles mount what they
need: `hub` the registry API and the tensorflow_hub route, `serving` the prediction APIs and
metrics, `all` both; every role gets health endpoints, so Kubernetes can run them apart.
"""
from __future__ import annotations

from flask import Flask

import hub.server
import serving
from hub.auth import access_for
from hub.registry import Registry
from schemas.settings import Settings

from . import health


def create_app(settings: Settings, *, registry: Registry | None = None) -> Flask:
    app = Flask("modelhub")
    # Every body but a publish (which sets its own, larger limit while it streams).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    registry = registry or Registry.open(settings.store)
    access = access_for(registry.store, settings)
    hub.server.errors.init_app(app)
    if settings.hosts_hub:
        hub.server.init_app(app, registry, access, settings)
    manager = serving.init_app(app, registry, access, settings) if settings.serves else None
    app.extensions["manager"] = manager  # for tests and tools that inspect the app
    health.init_app(app, registry, manager)
    return app
