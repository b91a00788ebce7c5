"""TensorFlow Serving's REST API (`/v1`), as its documentation (api_rest.md) describes it.

    GET  /v1/models                                      every model and its versions (an addition)
    GET  /v1/models/NAME[/versions/N|/labels/L]          version status
    GET  /v1/models/NAME[/versions/N|/labels/L]/metadata signature_def in TF Serving's shape
    POST /v1/models/NAME[/versions/N|/labels/L]:predict  row ("instances") or columnar ("inputs")
    POST ...:classify, ...:regress                       "examples" (+ "context") as tf.Example

Errors are `{"error": "<message>"}` with TF Serving's status codes.
"""
from __future__ import annotations

import re

import numpy as np
import orjson
from flask import Blueprint, request

from hub.refs import check_version
from schemas.errors import InvalidArgument, ModelNotFound

from .. import json_body, metrics, tf_example
from ..served import ServedVersion
from ..tensors import to_json
from .common import get_dataplane, json_response, prediction_api

v1 = prediction_api(Blueprint("tfserving", __name__, url_prefix="/v1"))

#: NAME[/versions/N | /labels/L][:verb | /metadata]
_TARGET = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                     r"(?::(?P<verb>[a-z]+)|/(?P<metadata>metadata))?$")
_DTYPES = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
           "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64",
           "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32",
           "uint64": "DT_UINT64", "bool": "DT_BOOL", "string": "DT_STRING",
           "bfloat16": "DT_BFLOAT16", "complex64": "DT_COMPLEX64", "complex128": "DT_COMPLEX128",
           "resource": "DT_RESOURCE", "variant": "DT_VARIANT", "invalid": "DT_INVALID"}


def _parse(target: str) -> dict:
    match = _TARGET.match(target)
    if not match:
        raise ModelNotFound(f"Malformed request: {request.method} /v1/models/{target}")
    parts = match.groupdict()
    if parts["version"] is not None:
        parts["version"] = check_version(parts["version"])
    return parts


def _status(served: ServedVersion) -> dict:
    code = "OK" if not served.error else ("PERMISSION_DENIED" if served.refused else "UNKNOWN")
    return {"version": str(served.version), "state": served.state,
            "status": {"error_code": code, "error_message": served.error}}


def _tensor_info(spec: dict) -> dict:
    shape = spec["shape"]
    return {"dtype": _DTYPES.get(spec["dtype"], "DT_INVALID"), "name": spec["name"],
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
    return {"model_spec": {"name": served.name, "signature_name": "", "version": str(served.version)},
            "metadata": {"signature_def": {"signature_def": signatures},
                         "modelhub": {"device": served.device, "runtime": served.runtime.name}}}


@v1.get("/models")
def list_models():
    return json_response({"models": [{"name": name, "model_version_status": [_status(s) for s in served]}
                             for name, served in get_dataplane().manager.all_models().items()]})


@v1.get("/models/<path:target>")
def model_status(target: str):
    parts = _parse(target)
    manager = get_dataplane().manager
    if parts["verb"]:
        raise InvalidArgument(f"use POST for :{parts['verb']}")
    if parts["metadata"]:
        served = manager.get(parts["name"], parts["version"], parts["label"])
        return json_response(_metadata(served), runtime=served.runtime.name)
    statuses = manager.statuses(parts["name"], parts["version"], parts["label"])
    runtimes = sorted({s.runtime.name for s in statuses if s.runtime is not None})
    return json_response({"model_version_status": [_status(s) for s in statuses]},
                         runtime=",".join(runtimes))


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


@v1.post("/models/<path:target>")
def predict(target: str):
    metrics.record("tfserving")
    parts = _parse(target)
    if parts["verb"] not in ("predict", "classify", "regress"):
        raise ModelNotFound(f"Malformed request: POST /v1/models/{target}")
    try:
        body = json_body.loads(request.get_data())
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(f"JSON Parse error: {e}") from e
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    dataplane = get_dataplane()
    served = dataplane.served(parts["name"], parts["version"], parts["label"])
    signature_name, spec = dataplane.signature(served, body.get("signature_name"))
    metrics.record("tfserving", served, signature_name)
    if parts["verb"] != "predict":
        return _classify_or_regress(parts["verb"], served, signature_name, spec, body)
    input_names = sorted(spec["inputs"])
    if ("instances" in body) == ("inputs" in body):
        raise InvalidArgument("the request must have exactly one of 'instances' or 'inputs'")
    row_format = "instances" in body
    columns = (_rows_to_columns(body["instances"], input_names) if row_format
               else _columns(body["inputs"], input_names))
    outputs = dataplane.predict_json(served, signature_name, spec, columns)
    runtime = served.runtime.name
    if row_format:
        return json_response({"predictions": _columns_to_rows(outputs)}, runtime=runtime)
    if len(outputs) == 1:
        (name, array), = outputs.items()
        return json_response({"outputs": to_json(array, name)}, runtime=runtime)
    return json_response({"outputs": {name: to_json(array, name) for name, array in outputs.items()}},
                         runtime=runtime)


def _classify_or_regress(verb: str, served: ServedVersion, signature_name: str, spec: dict,
                         body: dict):
    method = tf_example.CLASSIFY if verb == "classify" else tf_example.REGRESS
    input_name = tf_example.check_method(signature_name, spec, method)
    outputs = get_dataplane().predict(served, signature_name, spec,
                                      {input_name: tf_example.serialize_examples(body)})
    results = (tf_example.classify_results(outputs) if verb == "classify"
               else tf_example.regress_results(outputs))
    return json_response({"results": results}, runtime=served.runtime.name)
