"""What the hub's views share: the registry, the access rule and the settings the app was built
with (its `extensions`), the `requires` guard, and the JSON error body."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from flask import Response, current_app, jsonify, request

from schemas.settings import Settings

from ..auth import Access, bearer_token
from ..registry import Registry


#: Where the hub keeps its context in `app.extensions`.
EXTENSION = "hub"


@dataclass(frozen=True)
class HubContext:
    registry: Registry
    access: Access
    settings: Settings


def get_registry() -> Registry:
    return current_app.extensions[EXTENSION].registry


def get_access() -> Access:
    return current_app.extensions[EXTENSION].access


def get_settings() -> Settings:
    return current_app.extensions[EXTENSION].settings


def requires(scope: str):
    """Views that need a token of at least `scope` (reads may be anonymous: see `Access`)."""
    def decorate(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            get_access().require(bearer_token(request.headers.get("Authorization")), scope)
            return view(*args, **kwargs)
        return guarded
    return decorate


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    """The hub's error body: `{"error": {"code": ..., "message": ...}}`."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def archive_response(manifest: dict, chunks) -> Response:
    filename = f"{manifest['name']}-{manifest['version']}.tar.gz"
    return Response(chunks, mimetype="application/gzip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
