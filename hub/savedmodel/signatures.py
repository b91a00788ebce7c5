"""Signatures and writer version read from `saved_model.pb`, without TensorFlow.

Importing TensorFlow costs seconds and a hub server should not hand uploaded bytes to it, so the
few fields needed here are decoded straight from the protobuf wire format (`wire`), which skips
the (large) graph by its length without reading it. The field numbers come
from tensorflow/core/protobuf/{saved_model,meta_graph}.proto and framework/{tensor_shape,types}.proto;
`tests/hub/savedmodel/test_signatures.py` checks the result against TensorFlow's own parser.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from schemas.errors import InvalidModel

from .wire import LEN, VARINT, DecodeError, fields, int64, map_entry, text

# tensorflow/core/framework/types.proto, DataType enum -> the names tf.dtypes uses.
DTYPES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
    8: "complex64", 9: "int64", 10: "bool", 11: "qint8", 12: "quint8", 13: "qint32",
    14: "bfloat16", 15: "qint16", 16: "quint16", 17: "uint16", 18: "complex128", 19: "float16",
    20: "resource", 21: "variant", 22: "uint32", 23: "uint64",
}

#: Protobuf messages cannot be larger; TensorFlow refuses such a saved_model.pb too.
MAX_PROTO_BYTES = 2 * 1024**3


@dataclass
class SavedModelInfo:
    signatures: dict[str, dict] = field(default_factory=dict)
    tensorflow_version: str | None = None
    tags: list[str] = field(default_factory=list)


def _shape(buf: memoryview) -> list[int] | None:
    dims, unknown_rank = [], False
    for number, _, value in fields(buf):
        if number == 2:  # Dim
            size = 0
            for dim_number, dim_wire, dim_value in fields(value):
                if dim_number == 1 and dim_wire == VARINT:
                    size = int64(dim_value)
            dims.append(size)
        elif number == 3:
            unknown_rank = bool(value)
    return None if unknown_rank else dims


def _tensor_info(buf: memoryview) -> dict:
    spec = {"name": "", "dtype": "invalid", "shape": None}
    for number, wire, value in fields(buf):
        if number == 1 and wire == LEN:
            spec["name"] = text(value)
        elif number == 2 and wire == VARINT:
            spec["dtype"] = DTYPES.get(value, f"dtype_{value}")
        elif number == 3 and wire == LEN:
            spec["shape"] = _shape(value)
        elif number == 5:
            spec["dtype"] = "composite"
    return spec


def _signature(buf: memoryview) -> dict:
    signature = {"method_name": "", "inputs": {}, "outputs": {}}
    for number, _, value in fields(buf):
        if number in (1, 2):
            key, info = map_entry(value)
            signature["inputs" if number == 1 else "outputs"][key] = _tensor_info(info)
        elif number == 3:
            signature["method_name"] = text(value)
    return signature


def _meta_graph(buf: memoryview) -> SavedModelInfo:
    info = SavedModelInfo()
    for number, _, value in fields(buf):
        if number == 1:  # MetaInfoDef
            for meta_number, _, meta_value in fields(value):
                if meta_number == 4:
                    info.tags.append(text(meta_value))
                elif meta_number == 5:
                    info.tensorflow_version = text(meta_value) or None
        elif number == 5:  # signature_def map entry
            key, signature = map_entry(value)
            info.signatures[key] = _signature(signature)
    return info


def parse_saved_model(data: bytes) -> SavedModelInfo:
    """Decode the serving meta graph of a binary `saved_model.pb`."""
    try:
        graphs = [_meta_graph(value) for number, wire, value in fields(memoryview(data))
                  if number == 2 and wire == LEN]
    except DecodeError as e:
        raise InvalidModel(f"saved_model.pb is not a valid SavedModel protobuf: {e}") from e
    if not graphs:
        raise InvalidModel("saved_model.pb holds no meta graph")
    return next((g for g in graphs if "serve" in g.tags), graphs[0])


def _parsetext(text: str) -> SavedModelInfo:
    """Rare `.pbtxt` SavedModels go through TensorFlow's own protobuf classes."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        message = text_format.Parse(text, saved_model_pb2.SavedModel())
    except text_format.ParseError as e:
        raise InvalidModel(f"saved_model.pbtxt is not a valid SavedModel: {e}") from e
    return parse_saved_model(message.SerializeToString())


def read_saved_model_info(root: str | Path) -> SavedModelInfo:
    """Signatures, tags and writer version of the SavedModel in folder `root`."""
    root = Path(root)
    binary = root / "saved_model.pb"
    if binary.is_file():
        if binary.stat().st_size > MAX_PROTO_BYTES:
            raise InvalidModel("saved_model.pb is larger than protobuf's 2 GiB limit")
        return parse_saved_model(binary.read_bytes())
    text = root / "saved_model.pbtxt"
    if text.is_file():
        if text.stat().st_size > MAX_PROTO_BYTES:
            raise InvalidModel("saved_model.pbtxt is larger than protobuf's 2 GiB limit")
        return _parsetext(text.readtext())
    raise InvalidModel(f"{root} is not a SavedModel: it has no saved_model.pb or saved_model.pbtxt")
