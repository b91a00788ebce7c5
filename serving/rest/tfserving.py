"""TensorFlow Serving's REST API (`/v1`), as its documentation (api_rest.md) describes it.

    GET  /v1/models                                      every model and its versions (an addition)
    GET  /v1/models/NAME[/versions/N|/labels/L]          version status
    GET  /v1/models/NAME[/versions/N|/labels/L]/metadata signature_def in TF Serving's shape
    POST /v1/models/NAME[/versions/N|/labels/L]:predict  row ("instances") or columnar ("inputs")
    POST ...:classify, ...:regress                       "examples" (+ "context") as tf.Example

Errors, unknown paths and methods included, are `{"error": "<message>"}` with TF Serving's status
codes. This module holds the wire format only; the data plane does the work.
"""
from __future__ import annotations

import re

import numpy as np
import orjson

from hub.refs import check_version
from schemas.errors import InvalidArgument, ModelNotFound

from .. import json_body, tf_example
from ..dataplane import Call, DataPlane
from ..served import ServedVersion
from ..tensors import TF_DTYPE_ENUMS, to_json
from .http import Request, Response, error_response, json_response

PREFIX = "/v1/models"
#: NAME (or NAMESPACE/NAME: a slash, as tritonclient and curl send it, or %2F)
#: [/versions/N | /labels/L][:verb | /metadata]
_TARGET = re.compile(r"\A(?P<name>[^/:]+(?:/(?!(?:versions|labels|metadata)(?:[/:]|\Z))[^/:]+)?)"
                     r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                     r"(?::(?P<verb>[a-z]+)|/(?P<metadata>metadata))?\Z")


def _parse(request: Request, target: str) -> dict:
    match = _TARGET.match(target)
    if not match:
        raise ModelNotFound(f"Malformed request: {request.method} {request.path}")
    parts = match.groupdict()
    if parts["version"] is not None:
        parts["version"] = check_version(parts["version"])
    return parts


def status_record(served: ServedVersion) -> dict:
    code = "OK" if not served.error else ("PERMISSION_DENIED" if served.refused else "UNKNOWN")
    return {"version": str(served.version), "state": served.state,
            "status": {"error_code": code, "error_message": served.error}}


def _tensor_info(spec: dict) -> dict:
    shape = spec["shape"]
    return {"dtype": TF_DTYPE_ENUMS.get(spec["dtype"], "DT_INVALID"), "name": spec["name"],
            "tensor_shape": {"dim": [] if shape is None else
                             [{"size": str(d), "name": ""} for d in shape],
                             "unknown_rank": shape is None}}


def _metadata(served: ServedVersion) -> dict:
    """The signatures this version serves (a TFLite artifact may hold only some of them)."""
    serving = set(served.runtime.signature_names())
    signatures = {
        name: {"inputs": {k: _tensor_info(s) for k, s in sig["inputs"].items()},
               "outputs": {k: _tensor_info(s) for k, s in sig["outputs"].items()},
               "method_name": sig["method_name"]}
        for name, sig in served.manifest["signatures"].items() if name in serving}
    return {"model_spec": {"name": served.name, "signature_name": "",
                           "version": str(served.version)},
            "metadata": {"signature_def": {"signature_def": signatures},
                         "modelhub": {"device": served.device, "runtime": served.runtime.name}}}


async def handle(request: Request, dataplane: DataPlane, call: Call) -> Response:
    """One /v1 request: the answer, or an error in TF Serving's shape."""
    if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
        raise ModelNotFound(f"Malformed request: {request.method} {request.path}")
    target = request.path[len(PREFIX):]
    if target in ("", "/"):
        if request.method != "GET":
            return error_response(f"Method {request.method} not allowed on {request.path}", 405)
        models = dataplane.manager.all_models()
        visible = set(dataplane.visible(call, models))
        return json_response({"models": [
            {"name": name, "model_version_status": [status_record(s) for s in served]}
            for name, served in models.items() if name in visible]})
    if not target.startswith("/"):
        raise ModelNotFound(f"Malformed request: {request.method} {request.path}")
    parts = _parse(request, target[1:])
    if request.method == "GET":
        return await _status_or_metadata(parts, dataplane, call)
    if request.method != "POST":
        return error_response(f"Method {request.method} not allowed on {request.path}", 405)
    if parts["verb"] not in ("predict", "classify", "regress"):
        raise ModelNotFound(f"Malformed request: POST {request.path}")
    call.api = "tfserving"
    try:
        body = json_body.loads(request.body)
    except (orjson.JSONDecodeError, RecursionError) as e:
        raise InvalidArgument(f"JSON Parse error: {e}") from e
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    served = await dataplane.served(parts["name"], parts["version"], parts["label"], call)
    signature, spec = dataplane.signature(served, body.get("signature_name"), call)
    if parts["verb"] != "predict":
        return await _classify_or_regress(parts["verb"], dataplane, served, signature, spec, body)
    if ("instances" in body) == ("inputs" in body):
        raise InvalidArgument("the request must have exactly one of 'instances' or 'inputs'")
    input_names = sorted(spec["inputs"])
    row_format = "instances" in body
    columns = (_rows_to_columns(body["instances"], input_names) if row_format
               else _columns(body["inputs"], input_names))
    outputs = await dataplane.predict_json(served, signature, spec, columns)
    runtime = served.runtime.name
    if row_format:
        return json_response({"predictions": _columns_to_rows(outputs)}, runtime=runtime)
    if len(outputs) == 1:
        (name, array), = outputs.items()
        return json_response({"outputs": to_json(array, name)}, runtime=runtime)
    return json_response({"outputs": {name: to_json(array, name)
                                      for name, array in outputs.items()}}, runtime=runtime)


async def _status_or_metadata(parts: dict, dataplane: DataPlane, call: Call) -> Response:
    manager = dataplane.manager
    if parts["verb"]:
        return error_response(f"Method GET not allowed for :{parts['verb']}; use POST", 405)
    if parts["metadata"]:
        served = await dataplane.served(parts["name"], parts["version"], parts["label"], call)
        return json_response(_metadata(served), runtime=served.runtime.name)
    await dataplane.check(call, parts["name"])
    statuses = manager.statuses(parts["name"], parts["version"], parts["label"])
    runtimes = sorted({s.runtime.name for s in statuses if s.runtime is not None})
    return json_response({"model_version_status": [status_record(s) for s in statuses]},
                         runtime=",".join(runtimes) or None)


def _rows_to_columns(instances: list, input_names: list[str]) -> dict:
    """`instances` (one entry per row) as one value per input."""
    if isinstance(instances, np.ndarray):  # a large numeric tensor, parsed already
        if len(input_names) != 1:
            raise InvalidArgument("the signature has several inputs, so every instance must be "
                                  "an object naming them")
        return {input_names[0]: instances}
    if not isinstance(instances, list) or not instances:
        raise InvalidArgument("'instances' must be a non-empty list")
    if all(isinstance(row, dict) and not set(row) <= {"b64"} for row in instances):
        keys = set(instances[0])
        if any(set(row) != keys for row in instances):
            raise InvalidArgument("every instance must have the same named inputs")
        return {key: [row[key] for row in instances] for key in keys}
    if len(input_names) != 1:
        raise InvalidArgument("the signature has several inputs, so every instance must be an "
                              "object naming them")
    return {input_names[0]: instances}


def _columns(inputs, input_names: list[str]) -> dict:
    if isinstance(inputs, dict) and inputs and not set(inputs) <= {"b64"}:
        return inputs
    if len(input_names) != 1:
        raise InvalidArgument("the signature has several inputs, so 'inputs' must be an object "
                              "naming them")
    return {input_names[0]: inputs}


def _columns_to_rows(outputs: dict) -> list:
    if len(outputs) == 1:
        (name, array), = outputs.items()
        return to_json(array, name)
    sizes = {array.shape[0] if array.ndim else None for array in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise InvalidArgument("the outputs do not share a batch size, so they cannot be returned "
                              "as rows; send 'inputs' (columnar) instead")
    columns = {name: to_json(array, name) for name, array in outputs.items()}
    return [{name: column[i] for name, column in columns.items()} for i in range(sizes.pop())]


async def _classify_or_regress(verb: str, dataplane: DataPlane, served: ServedVersion,
                               signature: str, spec: dict, body: dict) -> Response:
    method = tf_example.CLASSIFY if verb == "classify" else tf_example.REGRESS
    input_name = tf_example.check_method(signature, spec, method)
    outputs = await dataplane.predict(served, signature, spec,
                                      {input_name: tf_example.serialize_examples(body)})
    results = (tf_example.classify_results(outputs) if verb == "classify"
               else tf_example.regress_results(outputs))
    return json_response({"results": results}, runtime=served.runtime.name)
