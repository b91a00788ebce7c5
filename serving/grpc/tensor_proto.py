"""TensorFlow's `TensorProto` to numpy and back, as TF Serving's gRPC API carries tensors.

In: `tensor_content` (raw little-endian bytes, what `tf.make_tensor_proto` writes for numbers)
or the typed repeated fields (`float_val`, `int64_val`, `string_val`, ...), where one value
fills the whole shape, as TensorFlow reads it. Out: `tensor_content` for numbers (one copy, no
per-element work) and `string_val` for strings; `tf.make_ndarray` reads both.
"""
from __future__ import annotations

import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from schemas.errors import TensorError

from ..tensors import NUMPY_DTYPES, TF_DTYPE_ENUMS, checked_dims

#: DataType enum value <-> TensorFlow dtype name, for the dtypes a request may carry.
ENUM_OF = {name: types_pb2.DataType.Value(enum) for name, enum in TF_DTYPE_ENUMS.items()
           if name in NUMPY_DTYPES}
DTYPE_OF = {enum: name for name, enum in ENUM_OF.items()}

#: The most a tensor filled from one value may take: the default request size limit.
MAX_FILLED_BYTES = 64 * 2**20
#: Where each dtype's values sit when not in tensor_content.
_VALUE_FIELD = {
    "float32": "float_val", "float64": "double_val", "int32": "int_val", "int16": "int_val",
    "int8": "int_val", "uint8": "int_val", "uint16": "int_val", "int64": "int64_val",
    "uint32": "uint32_val", "uint64": "uint64_val", "bool": "bool_val", "float16": "half_val",
    "string": "string_val",
}


def dtype_name(enum: int) -> str:
    if enum in DTYPE_OF:
        return DTYPE_OF[enum]
    return types_pb2.DataType.Name(enum) if enum in types_pb2.DataType.values() else \
        f"dtype {enum}"


def shape_of(proto: tensor_pb2.TensorProto, where: str) -> list[int]:
    if proto.tensor_shape.unknown_rank:
        raise TensorError(f"{where}: a tensor of unknown rank cannot be fed")
    return checked_dims([d.size for d in proto.tensor_shape.dim], where)


def to_array(proto: tensor_pb2.TensorProto, where: str) -> np.ndarray:
    """A request's TensorProto as a numpy array (strings: an object array of bytes)."""
    dtype = DTYPE_OF.get(proto.dtype)
    if dtype is None:
        raise TensorError(f"{where}: {dtype_name(proto.dtype)} cannot be fed to a model here")
    shape = shape_of(proto, where)
    count = math.prod(shape)
    if dtype == "string":
        values = list(proto.string_val)
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif proto.tensor_content:
        np_dtype = np.dtype(NUMPY_DTYPES[dtype]).newbyteorder("<")
        if len(proto.tensor_content) != count * np_dtype.itemsize:
            raise TensorError(f"{where}: {len(proto.tensor_content)} bytes of tensor_content for "
                              f"{count} {dtype} values")
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
    else:
        values = getattr(proto, _VALUE_FIELD[dtype])
        if dtype == "float16":  # half_val holds the bit patterns
            array = np.array(values, dtype=np.uint16).view(np.float16)
        else:
            try:  # numpy refuses Python integers out of the dtype's range (int_val is wider)
                array = np.array(values, dtype=NUMPY_DTYPES[dtype])
            except OverflowError as e:
                raise TensorError(f"{where}: values out of range for {dtype}") from e
    if array.size == count:
        return array.reshape(shape)
    if array.size > 1 or (array.size == 0 and dtype == "string"):
        raise TensorError(f"{where}: {array.size} values for shape {shape}")
    # One value (or none: zeros) fills the shape, as TensorFlow reads a TensorProto; a few
    # bytes must not buy gigabytes, so what is filled is held to what a request could carry.
    if count * array.dtype.itemsize > MAX_FILLED_BYTES:
        raise TensorError(f"{where}: {array.size} value(s) would fill shape {shape}, more than "
                          f"{MAX_FILLED_BYTES >> 20} MiB; send the values")
    if array.size == 1:
        return np.full(shape, array[0], dtype=array.dtype)
    return np.zeros(shape, dtype=array.dtype)


def from_array(array: np.ndarray) -> tensor_pb2.TensorProto:
    """An output array as a TensorProto."""
    is_string = array.dtype == object or array.dtype.kind == "S"
    name = "string" if is_string else array.dtype.name
    proto = tensor_pb2.TensorProto(
        dtype=ENUM_OF[name],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]))
    if is_string:
        proto.string_val.extend(bytes(v) for v in array.reshape(-1))
    else:
        proto.tensor_content = np.ascontiguousarray(
            array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto
