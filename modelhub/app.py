"""The modelhub web application, assembled: `create_app(settings)` builds the control plane.

This is the composition root: the one place that knows every part. The roles mount what they
need: `hub` the registry API, the catalog and the tensorflow_hub route, `serving` the models
and their metrics, `all` both; every role gets health endpoints, so Kubernetes can run them apart. The
prediction APIs (REST and gRPC) run beside this app on the event loop: see `modelhub.asgi`.
"""
from __future__ import annotations

from flask import Flask

import hub.catalog
import hub.server
import serving
from hub.auth import access_for
from hub.registry import Registry
from schemas.settings import Settings

from . import health
from .rundir import RunDir


def create_app(settings: Settings, *, registry: Registry | None = None,
               run_dir: RunDir | None = None) -> Flask:
    """The Flask app; with a serving role, its models start loading in the background
    (`app.extensions["serving"]`). `run_dir`: the server's shared folder, when there are
    several workers to be ready."""
    app = Flask("modelhub")
    # Every body but a publish (which sets its own, larger limit while it streams).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    registry = registry or Registry.open(settings.store)
    access = access_for(registry.store, settings)
    hub.server.errors.init_app(app)
    plane = serving.build(registry, access, settings) if settings.serves else None
    if settings.hosts_hub:
        hub.server.init_app(app, registry, access, settings)
        hub.catalog.init_app(app, registry, access, settings,
                             manager=plane.manager if plane else None)
    if plane is not None:
        serving.init_app(app, plane)
        plane.manager.start_in_background()
    app.extensions["serving"] = plane
    app.extensions["manager"] = plane.manager if plane else None  # for tests and tools
    health.init_app(app, registry, plane.manager if plane else None, run_dir)
    return app
