"""The Open Inference Protocol (KServe V2) over REST, with Triton's binary tensor extension.

    GET  /v2                                         server metadata
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/NAME[/versions/N]                model metadata
    GET  /v2/models/NAME[/versions/N]/ready
    POST /v2/models/NAME[/versions/N]/infer          JSON tensors, or a JSON header of
                                                     `Inference-Header-Content-Length` bytes
                                                     followed by raw tensors

The signature used is `serving_default`, or the request's `parameters.signature_name`. Errors,
unknown paths and methods included, are `{"error": "<message>"}`. This module holds the wire
format only; `openinference` says what the protocol means and the data plane does the work.
"""
from __future__ import annotations

import re

import numpy as np
import orjson

from hub.refs import check_version
from schemas.errors import InvalidArgument, ModelNotFound, TensorError
from schemas.inference import V2_TO_TF, load_inference_request

from .. import confinement, json_body, openinference
from ..dataplane import Call, DataPlane
from ..tensors import decode_binary, encode_binary, shaped, to_array, to_json
from .http import Request, Response, error_response, json_response

PREFIX = "/v2"
HEADER_LENGTH = "Inference-Header-Content-Length"
#: /models/NAME or /models/NAMESPACE/NAME (a slash, as tritonclient sends it, or %2F), then
#: [/versions/N][/ready | /infer]
_MODEL = re.compile(r"\A/models/(?P<name>[^/]+(?:/(?!(?:versions|ready|infer)(?:/|\Z))[^/]+)?)"
                    r"(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?\Z")


async def handle(request: Request, dataplane: DataPlane, call: Call) -> Response:
    """One /v2 request: the answer, or an error in the protocol's shape."""
    target = request.path[len(PREFIX):]
    if target in ("", "/", "/health/live", "/health/ready"):
        if request.method != "GET":
            return _not_allowed(request)
        if target == "/health/live":
            return json_response({"live": True})
        if target == "/health/ready":
            ready = dataplane.manager.ready()
            return json_response({"ready": ready}, 200 if ready else 503)
        return json_response({**openinference.server_metadata(), "confinement": _confinement()})
    match = _MODEL.match(target)
    if not match:
        raise ModelNotFound(f"no such endpoint: {request.method} {request.path}")
    name, action = match["name"], match["action"]
    version = None if match["version"] is None else check_version(match["version"])
    if action == "/infer":
        if request.method != "POST":
            return _not_allowed(request)
        call.api = "v2"
        return await _infer(request, dataplane, call, name, version)
    if request.method != "GET":
        return _not_allowed(request)
    served = await dataplane.served(name, version, call=call)  # raises unless AVAILABLE
    if action == "/ready":
        return json_response({"name": name, "ready": True})
    metadata = openinference.model_metadata(dataplane, served)
    metadata["parameters"] = {"device": served.device, "runtime": served.runtime.name}
    return json_response(metadata, runtime=served.runtime.name)


def _not_allowed(request: Request) -> Response:
    return error_response(f"Method {request.method} not allowed on {request.path}", 405)


def _confinement() -> dict:
    """Whether this worker runs models under Landlock (modelhub's own field)."""
    confined = confinement.CURRENT
    return {"enforced": bool(confined and confined.enforced),
            "abi": confined.abi if confined else confinement.landlock_abi(),
            "reason": confined.reason if confined else "not started by modelhub serve"}


def _split_body(request: Request) -> tuple[dict, memoryview]:
    """The JSON part, checked against the protocol's schema, and the binary part after it."""
    raw = request.body
    header = request.header(HEADER_LENGTH.lower())
    if header is None:
        json_part, binary = raw, memoryview(b"")
    else:
        if not (header.isascii() and header.isdigit()):
            raise InvalidArgument(f"{HEADER_LENGTH} must be a whole number")
        length = int(header)
        if not 0 < length <= len(raw):
            raise InvalidArgument(f"{HEADER_LENGTH} {length} does not fit a {len(raw)}-byte body")
        json_part, binary = raw[:length], memoryview(raw)[length:]
    try:
        body = json_body.loads_inference(json_part)
    except (orjson.JSONDecodeError, RecursionError) as e:
        raise InvalidArgument(f"malformed JSON: {e}") from e
    return load_inference_request(body), binary


def _input_arrays(body: dict, binary: memoryview) -> dict[str, np.ndarray]:
    arrays, offset = {}, 0
    for tensor in body["inputs"]:
        name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
        where = f"input {name}"
        size = tensor["parameters"].get("binary_data_size")
        if size is not None:
            if offset + size > len(binary):
                raise TensorError(f"{where}: binary_data_size {size} runs past the body")
            arrays[name] = decode_binary(binary[offset:offset + size], datatype, shape, where)
            offset += size
            continue
        if "data" not in tensor:
            raise TensorError(f"{where}: no 'data' and no binary_data_size")
        arrays[name] = shaped(to_array(tensor["data"], V2_TO_TF[datatype], where), shape, where)
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes follow the last binary tensor; "
                              "binary_data_size must cover the whole binary part")
    return arrays


def _outputs_wanted(body: dict) -> tuple[list[str] | None, set[str] | bool]:
    """(output names asked for, or None for all; the names to send as binary, or True for
    all)."""
    everything_binary = bool(body["parameters"].get("binary_data_output"))
    requested = body.get("outputs")
    if requested is None:
        return None, True if everything_binary else set()
    binary = {out["name"] for out in requested if out["parameters"].get("binary_data")}
    return [out["name"] for out in requested], True if everything_binary else binary


async def _infer(request: Request, dataplane: DataPlane, call: Call, name: str,
                 version: int | None) -> Response:
    body, binary = _split_body(request)
    requested, as_binary = _outputs_wanted(body)
    served, outputs = await openinference.infer(
        dataplane, call, name, version, body["parameters"].get("signature_name"),
        _input_arrays(body, binary), requested)
    results, chunks = [], []
    for out_name, array in outputs.items():
        entry = {"name": out_name, "datatype": openinference.array_datatype(array),
                 "shape": list(array.shape)}
        if as_binary is True or out_name in as_binary:
            data = encode_binary(array)
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = to_json(array.reshape(-1), out_name)
        results.append(entry)
    answer = {"model_name": name, "model_version": str(served.version), "outputs": results}
    if "id" in body:
        answer["id"] = body["id"]
    response = json_response(answer, runtime=served.runtime.name)
    if chunks:
        response.headers += ((HEADER_LENGTH.lower().encode(), str(len(response.body)).encode()),)
        response.body = b"".join([response.body, *chunks])
        response.content_type = b"application/octet-stream"
    return response
