"""What both gRPC services share: the read-access check on `authorization: Bearer` metadata,
the caller's deadline, errors as gRPC status codes, and the request count in the metrics."""
from __future__ import annotations

import functools
import logging
import time

import grpc

from hub.auth import Access, bearer_token
from schemas.errors import ModelhubError, ModelRuntimeError

from ..batching import MODEL_CALL_ON_LOOP
from ..dataplane import Call, DataPlane

log = logging.getLogger(__name__)

#: HTTP statuses of modelhub's errors -> gRPC codes (the inverse of google.rpc's table).
_CODE_OF_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS, 412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED, 415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.FAILED_PRECONDITION, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED, 500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED, 502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(error: ModelhubError) -> grpc.StatusCode:
    if isinstance(error, ModelRuntimeError):  # TensorFlow's own code, which is gRPC's
        return grpc.StatusCode[error.grpc_code]
    return _CODE_OF_STATUS.get(error.status, grpc.StatusCode.UNKNOWN)


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline on time.monotonic()'s clock (None: none set)."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class Servicer:
    """Base of modelhub's servicers: the data plane and the access rule."""

    def __init__(self, dataplane: DataPlane, access: Access):
        self.dataplane = dataplane
        self.access = access


def rpc(api: str = ""):
    """A servicer method `(self, request, context, call)`: the token checked, modelhub's errors
    turned into status codes with their messages, and, for a prediction (`api` set), the
    request counted under `api`."""

    def decorate(method):
        @functools.wraps(method)
        async def handler(self: Servicer, request, context: grpc.aio.ServicerContext):
            call = Call(api)
            # gRPC brings requests in on its own threads: the model must not hold the loop's
            # core (serving/batching.py). The setting lives in this call's task only.
            MODEL_CALL_ON_LOOP.set(False)
            status = 500
            try:
                metadata = dict(context.invocation_metadata() or ())
                call.identity = await self.access.require_async(
                    bearer_token(metadata.get("authorization")), "read")
                response = await method(self, request, context, call)
                status = 200
                return response
            except ModelhubError as e:
                status = e.status
                await context.abort(status_code(e), str(e))
            except (grpc.aio.AbortError, grpc.aio.UsageError):
                raise  # the method aborted with a code of its own
            except Exception:
                log.exception("unexpected error in %s", method.__qualname__)
                await context.abort(grpc.StatusCode.INTERNAL,
                                    "internal error; the server log has the details")
            finally:
                self.dataplane.finish(call, status)

        return handler

    return decorate
