"""The modelhub web application: `create_app()` builds it; gunicorn runs `serving.app:create_app()`.

Settings come from defaults, then `MODELHUB_*` environment variables (`MODELHUB_STORE`,
`MODELHUB_ANONYMOUS_READ=false`, ...), then the `config` mapping (tests pass theirs here).
"""
from __future__ import annotations

from flask import Flask

from hub import api as hub_api
from hub.registry import DEFAULT_STORE

from . import health

DEFAULTS = {
    "STORE": DEFAULT_STORE,
    "ANONYMOUS_READ": True,                   # reads without a token; writes always need one
    "MAX_UPLOAD_BYTES": 16 * 1024**3,         # a publish body (compressed archive)
    "MAX_EXTRACTED_BYTES": 32 * 1024**3,      # what that archive may expand to
    "MAX_CONTENT_LENGTH": 1024**2,            # every other request body (JSON)
}


def create_app(config: dict | None = None) -> Flask:
    app = Flask("modelhub")
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("MODELHUB")
    if config:
        app.config.from_mapping(config)
    hub_api.init_app(app)
    health.init_app(app)
    return app
