"""The Open Inference Protocol's (KServe V2) request body, checked whole before anything runs.

    {"id": "...", "parameters": {...},
     "inputs":  [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [...],
                  "parameters": {"binary_data_size": 24}}],
     "outputs": [{"name": "y", "parameters": {"binary_data": true}}]}

`data` is left as it came: its values are checked against the tensor's datatype and shape when
they become an array (one numpy call, not a field per number). Extra keys are ignored, as the
protocol's other servers do; every key the protocol defines must have its type.
"""
from __future__ import annotations

import math

import orjson
from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, validate, validates

from schemas.errors import InvalidArgument

#: The protocol's datatypes and the TensorFlow dtype each is.
V2_TO_TF = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "string",
}

#: A tensor this large (elements) is refused before anything is allocated for it.
MAX_ELEMENTS = 2**31 - 1


class _StrictBool(fields.Boolean):
    """true or false, not 1 or "yes" (1 == True in Python, so truthy={True} would take 1)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not bool:
            raise self.make_error("invalid", input=value)
        return value


def _strict_bool() -> fields.Boolean:
    return _StrictBool()


class ParametersSchema(Schema):
    """The parameters the server reads (Triton's binary extension, and which signature to run);
    others pass through untouched."""

    class Meta:
        unknown = INCLUDE

    binary_data_size = fields.Int(strict=True, validate=validate.Range(min=0))
    binary_data = _strict_bool()
    binary_data_output = _strict_bool()
    signature_name = fields.Str(validate=validate.Length(min=1))


class InputTensorSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.Str(required=True, validate=validate.Length(min=1))
    shape = fields.List(fields.Int(strict=True, validate=validate.Range(min=0)), required=True)
    datatype = fields.Str(required=True, validate=validate.OneOf(
        V2_TO_TF, error="unknown datatype {input!r}; one of {choices}"))
    parameters = fields.Nested(ParametersSchema, load_default=dict)
    data = fields.Raw()

    @validates("shape")
    def _not_too_large(self, shape: list[int], **_) -> None:
        count = math.prod(shape)  # Python integers: no overflow
        if count > MAX_ELEMENTS:
            raise ValidationError(f"{count} elements is more than a tensor may hold "
                                  f"({MAX_ELEMENTS})")


class OutputTensorSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.Str(required=True, validate=validate.Length(min=1))
    parameters = fields.Nested(ParametersSchema, load_default=dict)


def repeated_names(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


def _unique_names(tensors: list[dict]) -> None:
    repeated = repeated_names([t["name"] for t in tensors])
    if repeated:
        raise ValidationError(f"names must be unique; repeated: {', '.join(repeated)}")


class InferenceRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.Str()
    parameters = fields.Nested(ParametersSchema, load_default=dict)
    inputs = fields.List(fields.Nested(InputTensorSchema), required=True,
                         validate=[validate.Length(min=1), _unique_names])
    outputs = fields.List(fields.Nested(OutputTensorSchema), validate=_unique_names)


_REQUEST = InferenceRequestSchema()

#: Request structures already found valid, by `_structure_key`: a client sends the same names,
#: shapes and parameters over and over, and the schema's verdict does not depend on the values
#: of `data` it leaves as it came (only on whether it is there and not null), nor on the value
#: of a string `id`. The key costs a few microseconds, the schema about forty. Each structure is
#: kept as JSON, so that every request gets objects of its own; structures of more than
#: _MAX_STRUCTURE_BYTES are not kept, and the memory is emptied when full: at most about 4 MB.
_VALID_STRUCTURES: dict[bytes, bytes] = {}
_MAX_STRUCTURES = 1024
_MAX_STRUCTURE_BYTES = 4096


def load_inference_request(body: object) -> dict:
    """The request body as parsed from JSON, checked; InvalidArgument names every problem
    found."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request must be a JSON object with a list of 'inputs'")
    key = _structure_key(body)
    known = _VALID_STRUCTURES.get(key) if key is not None else None
    if known is not None:
        return _with_values(orjson.loads(known), body)
    try:
        loaded = _REQUEST.load(body)
    except ValidationError as e:
        raise InvalidArgument(f"invalid inference request: {_flatten(e.messages)}") from None
    if key is not None:
        if len(_VALID_STRUCTURES) >= _MAX_STRUCTURES:
            _VALID_STRUCTURES.clear()
        _VALID_STRUCTURES[key] = orjson.dumps(_without_values(loaded))
    return loaded


def _structure_key(body: dict) -> bytes | None:
    """The body without the values of its inputs' `data` and of its `id` (None: not a body to
    remember; the schema then checks it as usual)."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs) or \
            not isinstance(body.get("id", ""), str):
        return None
    skeleton = {k: v for k, v in body.items() if k != "id"}
    skeleton["inputs"] = [{k: v for k, v in t.items() if k != "data"} | {"data": _data_kind(t)}
                          for t in inputs]
    try:
        key = orjson.dumps(skeleton, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return None
    return key if len(key) <= _MAX_STRUCTURE_BYTES else None


def _data_kind(tensor: dict) -> str:
    """What the schema sees of a tensor's `data`: absent, null (refused) or given."""
    if "data" not in tensor:
        return "absent"
    return "null" if tensor["data"] is None else "given"


def _without_values(loaded: dict) -> dict:
    """What a checked body has in common with its kin: no `data` (it could be megabytes) and
    no `id`."""
    structure = {k: v for k, v in loaded.items() if k != "id"}
    structure["inputs"] = [{k: v for k, v in tensor.items() if k != "data"}
                           for tensor in loaded["inputs"]]
    return structure


def _with_values(structure: dict, body: dict) -> dict:
    """A checked structure (objects of its own) with this body's `data` and `id`."""
    for tensor, given in zip(structure["inputs"], body["inputs"]):
        if "data" in given:
            tensor["data"] = given["data"]
    if "id" in body:
        structure["id"] = body["id"]
    return structure


def _flatten(messages, prefix: str = "") -> str:
    """marshmallow's nested messages as one line: `inputs.0.shape: Not a valid list.`"""
    if isinstance(messages, dict):
        return "; ".join(_flatten(v, prefix if k == "_schema" else f"{prefix}{k}.")
                         for k, v in messages.items())
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return f"{prefix.rstrip('.')}: {' '.join(messages)}" if prefix else " ".join(messages)
    return "; ".join(_flatten(m, prefix) for m in messages)
