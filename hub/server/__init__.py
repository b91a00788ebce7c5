"""The hub's HTTP face: the registry API (`api`, described by `openapi`), the tensorflow_hub
download (`tfhub`, whose route the catalog mounts), the guard every view uses
(`context.requires`) and the JSON error handlers (`errors`)."""
from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter

from schemas.manifest import RESERVED_WORDS
from schemas.settings import Settings

from ..audit import AuditLog
from ..auth import Access
from ..registry import Registry
from . import errors
from .api import api
from .context import EXTENSION, HubContext


class ModelNameConverter(BaseConverter):
    """`<model:name>`: a model name, with its namespace when it has one (`nlp/bert`): the one
    slash a name may hold. Reserved words (versions, aliases, ...) are never names, so the rest
    of the path is never taken for part of one. Anything else is taken here and checked by the
    view, so a bad name is a 400 that says why, not a bare 404."""

    regex = rf"[^/]+(?:/(?!(?:{'|'.join(RESERVED_WORDS)})(?:/|\Z))[^/]+)?"
    part_isolating = False


def init_app(app: Flask, registry: Registry, access: Access, settings: Settings) -> None:
    """Mount the hub's routes on `app`, with the registry, access rule and settings they use."""
    app.url_map.converters["model"] = ModelNameConverter
    app.extensions[EXTENSION] = HubContext(registry, access, settings,
                                           AuditLog(registry.store, access.tokens.secret))
    app.register_blueprint(api)


__all__ = ["init_app", "errors"]
