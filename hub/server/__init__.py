"""The hub's HTTP face: the registry API (`api`, described by `openapi`), the tensorflow_hub
download route (`tfhub`), the guard every view uses (`context.requires`) and the JSON error
handlers (`errors`)."""
from __future__ import annotations

from flask import Flask

from schemas.settings import Settings

from ..auth import Access
from ..registry import Registry
from . import errors
from .api import api
from .context import EXTENSION, HubContext
from .tfhub import tfhub


def init_app(app: Flask, registry: Registry, access: Access, settings: Settings) -> None:
    """Mount the hub's routes on `app`, with the registry, access rule and settings they use."""
    app.extensions[EXTENSION] = HubContext(registry, access, settings)
    app.register_blueprint(api)
    app.register_blueprint(tfhub)


__all__ = ["init_app", "errors"]
