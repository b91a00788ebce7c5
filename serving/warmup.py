"""Warm-up inputs: what a version is run with once per batch size before it is AVAILABLE, so the
first real requests do not pay for tracing and allocation.

Tensors get zeros (or empty strings). A signature that parses serialized tf.Examples (TF
Serving's classify and regress, or any `ParseExample`) gets valid Examples instead: an empty
string is not an Example with the features its parser requires, and TensorFlow would log the
parse failure as a warning at every start. The required features are read from the graph: each
`ParseExample`/`ParseExampleV2` node's dense keys, dtypes and shapes, those without a default.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .tensors import NUMPY_DTYPES

log = logging.getLogger(__name__)

_PARSERS = ("ParseExample", "ParseExampleV2")


def zeros(spec_inputs: dict, rows: int) -> dict[str, np.ndarray]:
    """Inputs built from a signature's specs: `rows` rows of zeros or empty strings."""
    inputs = {}
    for key, spec in spec_inputs.items():
        shape = [d if d is not None and d >= 0 else 1 for d in (spec["shape"] or [1])]
        if spec["shape"] and spec["shape"][0] == -1:
            shape[0] = rows
        if spec["dtype"] == "string":
            inputs[key] = np.full(shape, b"", dtype=object)
        else:
            inputs[key] = np.zeros(shape, dtype=NUMPY_DTYPES[spec["dtype"]])
    return inputs


def example_features(saved_model_dir: Path) -> list[tuple[str, int, list[int]]]:
    """(key, DataType enum, shape) of every dense feature an Example parser in the graph
    requires (one without a default value)."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import tensor_util

    model = saved_model_pb2.SavedModel()
    model.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    found: dict[str, tuple[int, list[int]]] = {}
    for meta in model.meta_graphs:
        graphs = [meta.graph_def.node, *(f.node_def for f in meta.graph_def.library.function)]
        for nodes in graphs:
            constants = {n.name: n.attr["value"].tensor for n in nodes if n.op == "Const"}

            def value(reference: str):
                tensor = constants.get(reference.lstrip("^").split(":")[0])
                return None if tensor is None else tensor_util.MakeNdarray(tensor)

            for node in nodes:
                if node.op not in _PARSERS:
                    continue
                types = list(node.attr["Tdense"].list.type)
                shapes = [[d.size for d in s.dim] for s in node.attr["dense_shapes"].list.shape]
                if node.op == "ParseExampleV2":  # inputs: serialized, names, sparse, dense, ragged, defaults
                    keys = value(node.input[3])
                    keys = [] if keys is None else list(keys.reshape(-1))
                    defaults = node.input[5:5 + len(keys)]
                else:  # serialized, names, sparse keys..., dense keys..., defaults...
                    sparse = node.attr["Nsparse"].i
                    count = node.attr["Ndense"].i
                    keys = [value(k) for k in node.input[2 + sparse:2 + sparse + count]]
                    keys = [k.reshape(-1)[0] for k in keys if k is not None]
                    defaults = node.input[2 + sparse + count:2 + sparse + 2 * count]
                for key, dtype, shape, default in zip(keys, types, shapes, defaults):
                    given = value(default)
                    if given is None or given.size == 0:  # no default: the feature is required
                        found[key.decode() if isinstance(key, bytes) else str(key)] = \
                            (dtype, shape)
    return [(key, dtype, shape) for key, (dtype, shape) in sorted(found.items())]


def examples(features: list[tuple[str, int, list[int]]], rows: int) -> np.ndarray:
    """`rows` serialized tf.Examples holding every required feature (zeros, empty strings)."""
    from tensorflow.core.example import example_pb2, feature_pb2
    from tensorflow.core.framework import types_pb2

    example = example_pb2.Example()
    for key, dtype, shape in features:
        count = int(np.prod([max(d, 1) for d in shape])) if shape else 1
        feature = example.features.feature[key]
        if dtype == types_pb2.DT_STRING:
            feature.bytes_list.CopyFrom(feature_pb2.BytesList(value=[b""] * count))
        elif dtype == types_pb2.DT_INT64:
            feature.int64_list.CopyFrom(feature_pb2.Int64List(value=[0] * count))
        else:
            feature.float_list.CopyFrom(feature_pb2.FloatList(value=[0.0] * count))
    serialized = example.SerializeToString()
    array = np.empty(rows, dtype=object)
    array[:] = [serialized] * rows
    return array


def inputs_for(sig: dict, rows: int, features: list | None) -> dict[str, np.ndarray]:
    """Warm-up inputs for one signature: Examples for a parser's one string input (when the
    graph has a parser), zeros otherwise."""
    inputs = zeros(sig["inputs"], rows)
    strings = [k for k, s in sig["inputs"].items() if s["dtype"] == "string"]
    if features is not None and len(sig["inputs"]) == 1 and strings and \
            sig["inputs"][strings[0]]["shape"] in ([-1], None):
        inputs[strings[0]] = examples(features, rows)
    return inputs
