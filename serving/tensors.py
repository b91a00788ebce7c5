"""Tensors on the wire: JSON values and bytes to numpy arrays and back.

TensorFlow Serving's REST formats (`instances` rows, `inputs` columns, `{"b64": ...}` binary
values) and the Open Inference Protocol's typed tensors (JSON `data`, or raw little-endian bytes
with the binary extension). Conversions go through numpy in one call, not element by element,
except for strings, which are Python objects either way.
"""
from __future__ import annotations

import base64
import binascii
import math
import struct

import numpy as np

from schemas.errors import TensorError
from schemas.inference import MAX_ELEMENTS, V2_TO_TF

#: TensorFlow dtype names (as in manifests) -> numpy dtypes. Strings are object arrays of bytes.
NUMPY_DTYPES = {
    "float16": np.float16, "float32": np.float32, "float64": np.float64,
    "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "bool": np.bool_, "string": np.object_,
}

#: TensorFlow dtype names -> Open Inference Protocol datatypes.
TF_TO_V2 = {tf: v2 for v2, tf in V2_TO_TF.items()}

#: TensorFlow dtype names -> TensorFlow's DataType enum names (TF Serving's metadata JSON).
TF_DTYPE_ENUMS = {
    "float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int8": "DT_INT8",
    "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64", "uint8": "DT_UINT8",
    "uint16": "DT_UINT16", "uint32": "DT_UINT32", "uint64": "DT_UINT64", "bool": "DT_BOOL",
    "string": "DT_STRING", "bfloat16": "DT_BFLOAT16", "complex64": "DT_COMPLEX64",
    "complex128": "DT_COMPLEX128", "resource": "DT_RESOURCE", "variant": "DT_VARIANT",
}


# --- strings ------------------------------------------------------------------------------------

def to_bytes(value, where: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise TensorError(f"{where}: invalid base64 in {{\"b64\": ...}}: {e}") from e
    if isinstance(value, bytes):
        return value
    raise TensorError(f"{where}: expected a string or {{\"b64\": ...}}, got {type(value).__name__}")


#: numpy's limit on dimensions: deeper nesting cannot be a tensor.
MAX_RANK = 64


def _string_array(value, where: str) -> np.ndarray:
    def convert(v, depth: int):
        if not isinstance(v, list):
            return to_bytes(v, where)
        if depth >= MAX_RANK:
            raise TensorError(f"{where}: lists nested deeper than a tensor's {MAX_RANK} "
                              "dimensions")
        return [convert(x, depth + 1) for x in v]

    converted = convert(value, 0)
    try:
        # Build the object array by shape first: np.array on a list of bytes would make a
        # fixed-width bytes array, stripping trailing NULs.
        shape = np.shape(np.array(converted, dtype=object))
        array = np.empty(shape, dtype=object)
        array[...] = converted
    except ValueError as e:
        raise TensorError(f"{where}: ragged nested lists: {e}") from e
    return array


# --- JSON values -> arrays ----------------------------------------------------------------------

#: Doubles hold every integer up to here exactly, and no odd one beyond.
_EXACT_INTEGERS = 2.0**53


def _has_bools(value) -> bool:
    """Whether nested lists hold a JSON true or false (at C speed per innermost list)."""
    if not isinstance(value, list):
        return isinstance(value, bool)
    if value and isinstance(value[0], list):
        return any(_has_bools(v) for v in value)
    return bool in set(map(type, value))


def check_shape(array: np.ndarray, shape: list[int] | None, where: str) -> None:
    """Raise unless `array` fits a signature shape (-1 = any size, None = any rank)."""
    if shape is None:
        return
    if array.ndim != len(shape) or any(s >= 0 and s != a for s, a in zip(shape, array.shape)):
        expected = "[" + ", ".join("-1" if s < 0 else str(s) for s in shape) + "]"
        raise TensorError(f"{where}: shape {list(array.shape)} does not match the signature's "
                          f"{expected}")


def to_array(value, dtype: str, where: str) -> np.ndarray:
    """A JSON value (nested lists of numbers, bools, strings or b64 objects) as a numpy array."""
    if dtype == "string":
        return _string_array(value, where)
    np_dtype = NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        raise TensorError(f"{where}: dtype {dtype} cannot be sent over JSON")
    try:
        array = np.asarray(value)
    except ValueError as e:
        raise TensorError(f"{where}: ragged nested lists: {e}") from e
    if array.dtype == object or array.dtype.kind in "USV":
        raise TensorError(f"{where}: expected {dtype} values, got {array.dtype.name} data")
    target = np.dtype(np_dtype)
    if target.kind == "b":
        if array.dtype.kind != "b":
            raise TensorError(f"{where}: expected true/false values for a bool tensor")
    elif array.dtype.kind == "b" or (not isinstance(value, np.ndarray) and _has_bools(value)):
        # numpy would read true as 1 (and [true, 2.5] as [1.0, 2.5]) without a trace
        raise TensorError(f"{where}: expected {dtype} values, got true/false")
    if array.dtype.kind == "f" and target.kind in "iu":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise TensorError(f"{where}: expected {dtype} values, got fractional numbers")
        if array.size and np.max(np.abs(array)) >= _EXACT_INTEGERS:
            # JSON parsers read integers this large as doubles, which lose their last digits
            # (-2**63 - 1 would become -2**63): refuse rather than run another number.
            raise TensorError(f"{where}: integers beyond ±2**53 cannot be read exactly from "
                              "JSON; send them as a binary V2 tensor or over gRPC")
    if target.kind in "iu" and array.size:
        # numpy wraps integers silently (300 -> 44 in uint8); refuse instead.
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise TensorError(f"{where}: values out of range for {dtype}")
    try:
        with np.errstate(over="raise", invalid="raise"):
            return array.astype(target, casting="unsafe", copy=False)
    except (FloatingPointError, OverflowError) as e:
        raise TensorError(f"{where}: values out of range for {dtype}") from e


# --- arrays -> JSON values ----------------------------------------------------------------------

def _encode_string(value: bytes, as_b64: bool):
    if as_b64:
        return {"b64": base64.b64encode(value).decode("ascii")}
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def to_json(array: np.ndarray, name: str):
    """An output array as JSON. String outputs are UTF-8 text, or `{"b64": ...}` when the output
    name ends in `_bytes` (TF Serving's rule) or the bytes are not valid UTF-8."""
    if array.dtype == object or array.dtype.kind == "S":
        as_b64 = name.endswith("_bytes")
        flat = [_encode_string(bytes(v), as_b64) for v in array.reshape(-1)]
        if array.ndim == 0:
            return flat[0]
        return np.array(flat + [None], dtype=object)[:-1].reshape(array.shape).tolist()
    return array.tolist()


# --- Open Inference Protocol binary tensors -----------------------------------------------------

def decode_binary(raw: memoryview, datatype: str, shape: list[int], where: str) -> np.ndarray:
    """Raw little-endian tensor bytes (BYTES: 4-byte length + bytes per element) as an array."""
    count = math.prod(shape)  # Python integers: a huge shape cannot wrap around
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise TensorError(f"{where}: truncated BYTES element length")
            (length,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + length > len(raw):
                raise TensorError(f"{where}: BYTES element runs past the end of the data")
            items.append(bytes(raw[pos:pos + length]))
            pos += length
        if len(items) != count:
            raise TensorError(f"{where}: {len(items)} BYTES elements for shape {shape}")
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    np_dtype = np.dtype(NUMPY_DTYPES[V2_TO_TF[datatype]]).newbyteorder("<")
    if len(raw) != count * np_dtype.itemsize:
        raise TensorError(f"{where}: {len(raw)} bytes of binary data for {count} {datatype} "
                          "elements")
    # A view over the request body: no copy until TensorFlow takes it.
    return np.frombuffer(raw, dtype=np_dtype).reshape(shape)


def encode_binary(array: np.ndarray) -> bytes:
    if array.dtype == object or array.dtype.kind == "S":
        parts = []
        for item in array.reshape(-1):
            item = bytes(item)
            parts.append(struct.pack("<I", len(item)))
            parts.append(item)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def checked_dims(shape: list[int], where: str) -> list[int]:
    """A request's shape, refused when a dimension is negative or it holds more elements than
    a tensor may."""
    if any(d < 0 for d in shape):
        raise TensorError(f"{where}: shape {shape} has a negative dimension")
    if math.prod(shape) > MAX_ELEMENTS:
        raise TensorError(f"{where}: shape {shape} holds more elements than a tensor may "
                          f"({MAX_ELEMENTS})")
    return shape


def shaped(array: np.ndarray, shape: list[int], where: str) -> np.ndarray:
    """`array` in `shape`, which must hold exactly as many values."""
    if array.size != math.prod(shape):
        raise TensorError(f"{where}: {array.size} values for shape {shape}")
    return array.reshape(shape)
