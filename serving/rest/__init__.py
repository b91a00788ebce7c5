"""The prediction APIs over REST, as an ASGI application: TensorFlow Serving's (`tfserving`,
`/v1`) and the Open Inference Protocol's (`v2`, `/v2`). Each module holds only its wire format;
the work is the data plane's. Everything here runs on the event loop: a request is a coroutine,
and only the model call leaves the loop (for the batcher's threads).
"""
from __future__ import annotations

import logging

from hub.auth import CSRF_HEADER, Access, bearer_token, session_token
from schemas.errors import ModelhubError, Unauthorized

from ..dataplane import Call, DataPlane
from . import tfserving, v2
from .http import Response, error_response, read_body, request_head, send_response

log = logging.getLogger(__name__)

#: Each API by its first path segment.
_HANDLERS = {"/v1": tfserving.handle, "/v2": v2.handle}
_CHALLENGE = ((b"www-authenticate", b'Bearer realm="modelhub"'),)


def prediction_path(path: str) -> bool:
    """Whether a request path belongs to the prediction APIs."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in _HANDLERS)


class PredictionFront:
    """`/v1` and `/v2`: read access checked, body read within the limit, errors (every one,
    500s included) in the protocols' `{"error": "..."}` shape, each prediction counted."""

    def __init__(self, dataplane: DataPlane, access: Access, body_limit: int):
        self.dataplane = dataplane
        self.access = access
        self.body_limit = body_limit

    async def __call__(self, scope: dict, receive, send) -> None:
        request = request_head(scope)
        prefix = request.path[:3]
        call = Call()
        try:
            token = bearer_token(request.header("authorization")) or session_token(
                self.access.tokens.secret, request.header("cookie"),
                request.header(CSRF_HEADER.lower()))  # the catalog's "try it", signed in
            call.identity = await self.access.require_async(token, "read")
            request.body = await read_body(request, receive, self.body_limit)
            response = await _HANDLERS[prefix](request, self.dataplane, call)
        except ConnectionResetError:
            return  # the client went away before its request was whole
        except ModelhubError as e:
            response = error_response(str(e), e.status,
                                      _CHALLENGE if isinstance(e, Unauthorized) else ())
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            response = error_response("internal error; the server log has the details", 500)
        self.dataplane.finish(call, response.status)
        await send_response(send, response)


__all__ = ["PredictionFront", "Response", "prediction_path"]
