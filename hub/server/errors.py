"""The app's error handlers: any error becomes the hub's JSON error body with the status its
class carries; an unexpected one is logged with its traceback and answered without it."""
from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from schemas.errors import ModelhubError, Unauthorized

from .context import error_response

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    app.register_error_handler(ModelhubError, modelhub_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)


def modelhub_error(e: ModelhubError) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="modelhub"'} if isinstance(e, Unauthorized) else None
    return error_response(e.status, e.code, str(e), headers)


def http_error(e: HTTPException) -> Response:
    code = (e.name or "error").lower().replace(" ", "_")
    message = e.description or e.name
    if e.code == 413:
        message = (f"the request body is larger than this server accepts "
                   f"({request.max_content_length} bytes)")
    # keep what the exception says about the response (Allow on a 405, ...), not its body type
    headers = {k: v for k, v in e.get_headers() if k.lower() != "content-type"}
    return error_response(e.code or 500, code, message, headers)


def unexpected_error(e: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "internal", "internal server error; the server log has the details")
