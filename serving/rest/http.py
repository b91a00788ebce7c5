"""HTTP for the prediction fronts, on ASGI directly: a request read whole (within the body
limit), a response written in one message, JSON with orjson. No framework sits between the
server and the data plane on this path; the control plane (Flask) handles everything else."""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.errors import TooLarge

JSON = b"application/json"
#: Sent with every prediction answer: which runtime answered (tensorflow, tflite), so that TF
#: Serving's and the V2 protocol's bodies stay exactly theirs.
RUNTIME_HEADER = "Modelhub-Runtime"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; the last value of a repeated header
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_response(body, status: int = 200, runtime: str | None = None) -> Response:
    headers = ((RUNTIME_HEADER.lower().encode(), runtime.encode()),) if runtime else ()
    # numpy values may reach a body (shapes, scalars): orjson writes them natively
    return Response(status, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                    headers=headers)


def error_response(message: str, status: int, extra: tuple = ()) -> Response:
    """TF Serving's and the V2 protocol's error shape: `{"error": "..."}`."""
    return Response(status, orjson.dumps({"error": message}), headers=extra)


def request_head(scope: dict) -> Request:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return Request(scope["method"], scope["path"], headers)


async def read_body(request: Request, receive, limit: int) -> bytes:
    """The whole body, refused with TooLarge as soon as it passes `limit` (a declared length
    over it is refused before anything is read)."""
    declared = request.header("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and \
            int(declared) > limit:
        raise TooLarge(f"the request body is larger than this server accepts ({limit} bytes)")
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("the client went away")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"the request body is larger than this server accepts "
                               f"({limit} bytes)")
            parts.append(chunk)
        if not message.get("more_body"):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def send_response(send, response: Response) -> None:
    await send({"type": "http.response.start", "status": response.status,
                "headers": [(b"content-type", response.content_type),
                            (b"content-length", str(len(response.body)).encode()),
                            *response.headers]})
    await send({"type": "http.response.body", "body": response.body})
