"""What the two REST prediction APIs share on the wire: JSON responses, `{"error": "..."}`
bodies, and the read-access check; and where they find the data plane."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from hub.auth import Access, bearer_token
from schemas.errors import ModelhubError

from ..dataplane import DataPlane

log = logging.getLogger(__name__)


RUNTIME_HEADER = "Modelhub-Runtime"


def json_response(body, status: int = 200, runtime: str | None = None) -> Response:
    """`runtime`: the runtime that answered (tensorflow, tflite), sent as a header so that TF
    Serving's and the V2 protocol's bodies stay exactly theirs."""
    # numpy values may reach a body (shapes, scalars): orjson writes them natively
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status=status,
                    mimetype="application/json",
                    headers={RUNTIME_HEADER: runtime} if runtime else None)


#: Where the prediction APIs keep their context in `app.extensions`.
EXTENSION = "serving"


@dataclass(frozen=True)
class ServingContext:
    dataplane: DataPlane
    access: Access


def get_dataplane() -> DataPlane:
    return current_app.extensions[EXTENSION].dataplane


def _require_read_access() -> None:
    access = current_app.extensions[EXTENSION].access
    access.require(bearer_token(request.headers.get("Authorization")), "read")


def prediction_api(blueprint: Blueprint) -> Blueprint:
    """Give a blueprint TF Serving's error shape (for every error, 500s included) and the hub's
    read-access rule."""

    @blueprint.errorhandler(ModelhubError)
    def _modelhub_error(e: ModelhubError) -> Response:
        return json_response({"error": str(e)}, e.status)

    @blueprint.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Response:
        return json_response({"error": e.description or e.name}, e.code or 500)

    @blueprint.errorhandler(Exception)
    def _unexpected_error(e: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return json_response({"error": "internal error; the server log has the details"}, 500)

    blueprint.before_request(_require_read_access)
    return blueprint
