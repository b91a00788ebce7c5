"""The Open Inference Protocol (KServe V2) over REST, with Triton's binary tensor extension.

    GET  /v2                                         server metadata
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/NAME[/versions/N]                model metadata
    GET  /v2/models/NAME[/versions/N]/ready
    POST /v2/models/NAME[/versions/N]/infer          JSON tensors, or a JSON header of
                                                     `Inference-Header-Content-Length` bytes
                                                     followed by raw tensors

The signature used is `serving_default`, or the request's `parameters.signature_name`.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as package_version

import numpy as np
import orjson
from flask import Blueprint, Response, request

from hub.refs import check_version
from schemas.errors import InvalidArgument, TensorError

from .. import confinement, metrics
from ..served import AVAILABLE
from ..tensors import TF_TO_V2, V2_TO_TF, decode_binary, encode_binary, to_array, to_json
from .common import RUNTIME_HEADER, get_dataplane, json_response, prediction_api

v2 = prediction_api(Blueprint("inference", __name__, url_prefix="/v2"))

HEADER_LENGTH = "Inference-Header-Content-Length"
SIGNATURE = "serving_default"


def _version(text: str | None) -> int | None:
    return None if text is None else check_version(text)


@v2.get("")
def server_metadata():
    try:
        server_version = package_version("modelhub")
    except PackageNotFoundError:
        server_version = "0"
    confined = confinement.CURRENT
    return json_response({
        "name": "modelhub", "version": server_version, "extensions": ["binary_tensor_data"],
        # Whether this worker runs models under Landlock (modelhub's own field).
        "confinement": {"enforced": bool(confined and confined.enforced),
                        "abi": confined.abi if confined else confinement.landlock_abi(),
                        "reason": confined.reason if confined else "not started by modelhub serve"}})


@v2.get("/health/live")
def live():
    return json_response({"live": True})


@v2.get("/health/ready")
def ready():
    is_ready = get_dataplane().manager.ready()
    return json_response({"ready": is_ready}, 200 if is_ready else 503)


def _tensor_metadata(specs: dict) -> list[dict]:
    return [{"name": key, "datatype": TF_TO_V2.get(spec["dtype"], spec["dtype"].upper()),
             "shape": [-1] if spec["shape"] is None else spec["shape"]}
            for key, spec in sorted(specs.items())]


@v2.get("/models/<name>")
@v2.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    manager = get_dataplane().manager
    served = manager.get(name, _version(version))
    spec = served.manifest["signatures"].get(SIGNATURE, {"inputs": {}, "outputs": {}})
    versions = [str(s.version) for s in manager.statuses(name) if s.state == AVAILABLE]
    return json_response({"name": name, "versions": versions, "platform": served.runtime.platform,
                          "inputs": _tensor_metadata(spec["inputs"]),
                          "outputs": _tensor_metadata(spec["outputs"]),
                          "parameters": {"device": served.device, "runtime": served.runtime.name}},
                         runtime=served.runtime.name)


@v2.get("/models/<name>/ready")
@v2.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    get_dataplane().served(name, _version(version))  # raises unless AVAILABLE
    return json_response({"name": name, "ready": True})


def _request_parts() -> tuple[dict, memoryview]:
    raw = request.get_data()
    header = request.headers.get(HEADER_LENGTH)
    if header is None:
        json_part, binary = raw, memoryview(b"")
    else:
        try:
            length = int(header)
        except ValueError:
            raise InvalidArgument(f"{HEADER_LENGTH} must be a whole number") from None
        if not 0 < length <= len(raw):
            raise InvalidArgument(f"{HEADER_LENGTH} {length} does not fit a {len(raw)}-byte body")
        json_part, binary = raw[:length], memoryview(raw)[length:]
    try:
        body = orjson.loads(json_part)
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(f"malformed JSON: {e}") from e
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise InvalidArgument("the request must be a JSON object with a list of 'inputs'")
    return body, binary


def _input_array(tensor: dict, binary: memoryview, offset: int) -> tuple[np.ndarray, int]:
    if not isinstance(tensor, dict) or not {"name", "shape", "datatype"} <= set(tensor):
        raise InvalidArgument("every input needs 'name', 'shape' and 'datatype'")
    name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
    where = f"input {name}"
    if datatype not in V2_TO_TF:
        raise TensorError(f"{where}: unknown datatype {datatype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise TensorError(f"{where}: shape must be a list of non-negative integers")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise TensorError(f"{where}: binary_data_size {size} runs past the body")
        return decode_binary(binary[offset:offset + size], datatype, shape, where), offset + size
    if "data" not in tensor:
        raise TensorError(f"{where}: no 'data' and no binary_data_size")
    array = to_array(tensor["data"], V2_TO_TF[datatype], where)
    if array.size != int(np.prod(shape)):
        raise TensorError(f"{where}: {array.size} values for shape {shape}")
    return array.reshape(shape), offset


def _wants_binary(body: dict) -> tuple[set[str] | None, set[str]]:
    """(requested output names or None for all, names to send as binary)."""
    everything_binary = bool((body.get("parameters") or {}).get("binary_data_output"))
    requested = body.get("outputs")
    if requested is None:
        return None, {"*"} if everything_binary else set()
    names, binary = set(), set()
    for out in requested:
        names.add(out["name"])
        if everything_binary or (out.get("parameters") or {}).get("binary_data"):
            binary.add(out["name"])
    return names, binary


@v2.post("/models/<name>/infer")
@v2.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    metrics.record("v2")
    body, binary = _request_parts()
    dataplane = get_dataplane()
    served = dataplane.served(name, _version(version))
    signature_name, spec = dataplane.signature(
        served, (body.get("parameters") or {}).get("signature_name") or SIGNATURE)
    metrics.record("v2", served, signature_name)
    arrays, offset = {}, 0
    for tensor in body["inputs"]:
        array, offset = _input_array(tensor, binary, offset)
        arrays[tensor["name"]] = array
    outputs = dataplane.predict(served, signature_name, spec, arrays)

    requested, as_binary = _wants_binary(body)
    unknown = (requested or set()) - set(outputs)
    if unknown:
        raise InvalidArgument(f"unknown output(s) {', '.join(sorted(unknown))}")
    results, chunks = [], []
    for out_name in sorted(outputs):
        if requested is not None and out_name not in requested:
            continue
        array = outputs[out_name]
        dtype = "string" if array.dtype == object else array.dtype.name
        entry = {"name": out_name, "datatype": TF_TO_V2[dtype], "shape": list(array.shape)}
        if "*" in as_binary or out_name in as_binary:
            data = encode_binary(array)
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = to_json(array.reshape(-1), out_name)
        results.append(entry)
    answer = {"model_name": name, "model_version": str(served.version), "outputs": results}
    if "id" in body:
        answer["id"] = body["id"]
    header = orjson.dumps(answer)
    runtime = {RUNTIME_HEADER: served.runtime.name}
    if not chunks:
        return Response(header, mimetype="application/json", headers=runtime)
    return Response(b"".join([header, *chunks]), mimetype="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(header)), **runtime})
