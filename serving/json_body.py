"""Request bodies as JSON, with a fast path for large numeric tensors.

An image of 224x224x3 floats is 150,528 JSON numbers (about 3 MB). Parsing it into Python
floats and lists and then asking numpy to walk them costs about 40 ms of CPU per image here,
more than the model itself. For such a body the `instances` / `inputs` array is parsed by
simdjson straight into a float64 buffer instead (about 4x faster; for one 784-value row, 33 µs
instead of 56 µs), and only when that is exact:

- the array is regular: the text between the body's first `[` and last `]`, with the numbers and
  whitespace removed, must be exactly the bracket-and-comma skeleton of the shape found by
  descending the first elements. Anything else there (a string, a key, `true`, a ragged row)
  makes them differ. Since that text then holds no quotes, it is one JSON value: the tensor;
- every value fits a double exactly (integers below 2**53), as orjson's parse would give;
- no key is repeated (orjson keeps the last value, simdjson the first).

Every other body, and every case the fast path declines, goes through orjson unchanged, so
errors and results are the same either way.
"""
from __future__ import annotations

import math

import numpy as np
import orjson
import simdjson

#: Smaller bodies hold too few numbers for the fast path to gain anything.
MIN_BYTES = 2048
TENSOR_KEYS = ("instances", "inputs")
_NUMBER_AND_SPACE = b"0123456789.eE+- \t\r\n"
_EXACT_INTEGERS = 2.0**53


def loads(raw: bytes) -> object:
    """The parsed body; large regular numeric tensors under `instances`/`inputs` come back as
    float64 numpy arrays, everything else as orjson would return it. Raises orjson's errors."""
    return _parsed(raw, _fast)


def loads_inference(raw: bytes) -> object:
    """An Open Inference Protocol body: every input's `data` that is an array of numbers only
    comes back as a flat float64 numpy array (simdjson reads them straight into a buffer; a
    `true`, a string or an integer a double cannot hold sends the body to orjson instead), the
    rest as orjson would return it."""
    return _parsed(raw, _fast_inference)


def _parsed(raw: bytes, fast) -> object:
    """`fast(document, raw)` on a large body, when it takes it; orjson otherwise."""
    if len(raw) >= MIN_BYTES:
        document = _document(raw)
        body = fast(document, raw) if document is not None else None
        if body is not None:
            return body
    return orjson.loads(raw)


def _document(raw: bytes) -> simdjson.Object | None:
    """The body as a simdjson object with no repeated key (None: anything else, malformed or
    nested too deep included, which orjson then reports)."""
    try:
        # A parser per call: its proxies must not outlive it, and requests run on many threads.
        document = simdjson.Parser().parse(raw)
    except (ValueError, RuntimeError):
        return None
    if not isinstance(document, simdjson.Object) or not _unique_keys(document):
        return None
    return document


def _fast(document: simdjson.Object, raw: bytes) -> dict | None:
    keys = list(document.keys())
    tensors = [key for key in TENSOR_KEYS if isinstance(document.get(key), simdjson.Array)]
    if len(tensors) != 1:
        return None
    array = _regular_numbers(raw, document[tensors[0]])
    if array is None:
        return None
    body = {key: _python(document[key]) for key in keys if key != tensors[0]}
    body[tensors[0]] = array
    return body


def _fast_inference(document: simdjson.Object, raw: bytes) -> dict | None:
    inputs = document.get("inputs")
    if not isinstance(inputs, simdjson.Array):
        return None
    tensors = []
    for tensor in inputs:
        if not isinstance(tensor, simdjson.Object) or not _unique_keys(tensor):
            return None
        item = {key: _python(tensor[key]) for key in tensor.keys() if key != "data"}
        if "data" in tensor.keys():
            item["data"] = _numbers(tensor["data"])
        tensors.append(item)
    body = {key: _python(document[key]) for key in document.keys() if key != "inputs"}
    body["inputs"] = tensors
    return body


def _numbers(value):
    """A non-empty array of numbers only, as a flat float64 array; anything else (strings,
    booleans, integers a double cannot hold) as the Python values orjson gives."""
    if isinstance(value, simdjson.Array) and len(value):
        try:  # nested lists are read row-major
            flat = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
        except (TypeError, ValueError):
            return _python(value)
        if np.all(np.abs(flat) < _EXACT_INTEGERS):
            return flat
    return _python(value)


def _unique_keys(document: simdjson.Object) -> bool:
    """No key repeated: orjson keeps a repeated key's last value, simdjson its first."""
    keys = list(document.keys())
    return len(keys) == len(set(keys))


def _python(value):
    if isinstance(value, simdjson.Array):
        return value.as_list()
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    return value


def _regular_numbers(raw: bytes, array: simdjson.Array) -> np.ndarray | None:
    shape, node = [], array
    while isinstance(node, simdjson.Array):
        if not len(node):
            return None
        shape.append(len(node))
        node = node[0]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    span = raw[raw.find(b"["):raw.rfind(b"]") + 1]
    if span.translate(None, _NUMBER_AND_SPACE) != _skeleton(shape):
        return None
    try:
        flat = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if flat.size != math.prod(shape) or not np.all(np.abs(flat) < _EXACT_INTEGERS):
        return None  # large integers (or inf) lose digits as doubles: orjson keeps them
    return flat.reshape(shape)


def _skeleton(shape: list[int]) -> bytes:
    """`[[,,],[,,]]` for shape (2, 3): a regular array's text without its numbers."""
    text = b"[" + b"," * (shape[-1] - 1) + b"]"
    for size in reversed(shape[:-1]):
        text = b"[" + b",".join([text] * size) + b"]"
    return text
