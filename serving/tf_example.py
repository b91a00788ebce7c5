"""TF Serving's :classify and :regress: JSON examples -> serialized tf.Example -> results.

A feature value is a number, a string, `{"b64": ...}`, or a list of one kind: integers (and
booleans) become an int64 list, numbers with a fraction part a float list, strings bytes.
"""
from __future__ import annotations

import numpy as np

from schemas.errors import InvalidArgument

from .tensors import to_bytes

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def _feature(name: str, value):
    import tensorflow as tf

    values = value if isinstance(value, list) else [value]
    where = f"feature {name}"
    if not values:
        return tf.train.Feature()
    if all(isinstance(v, (bool, int)) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    if all(isinstance(v, (bool, int, float)) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[to_bytes(v, where) for v in values]))


def serialize_examples(body: dict) -> np.ndarray:
    """The request's `examples` (each merged over `context`) as serialized tf.Example protos."""
    import tensorflow as tf

    examples, context = body.get("examples"), body.get("context") or {}
    if not isinstance(examples, list) or not examples:
        raise InvalidArgument("'examples' must be a non-empty list of objects")
    if not isinstance(context, dict) or not all(isinstance(e, dict) for e in examples):
        raise InvalidArgument("'context' and every example must be JSON objects of features")
    serialized = np.empty(len(examples), dtype=object)
    for i, example in enumerate(examples):
        features = {k: _feature(k, v) for k, v in {**context, **example}.items()}
        serialized[i] = tf.train.Example(
            features=tf.train.Features(feature=features)).SerializeToString()
    return serialized


def check_method(signature_name: str, spec: dict, method: str) -> str:
    """The signature's one string input, after checking it is a `method` signature."""
    if spec["method_name"] != method:
        raise InvalidArgument(f"Expected {method.rsplit('/', 1)[-1]} signature method_name to be "
                              f"{method}. Was: {spec['method_name'] or 'unset'} "
                              f"(signature {signature_name})")
    inputs = [k for k, s in spec["inputs"].items() if s["dtype"] == "string"]
    if len(spec["inputs"]) != 1 or not inputs:
        raise InvalidArgument(f"signature {signature_name} must take one string input")
    return inputs[0]


def classify_results(outputs: dict[str, np.ndarray]) -> list:
    """[[[class, score], ...] per example]: classes default to "" when only scores exist."""
    scores, classes = outputs.get("scores"), outputs.get("classes")
    if scores is None and classes is None:
        raise InvalidArgument("a classify signature must return 'classes' and/or 'scores'")
    reference = scores if scores is not None else classes
    reference = reference.reshape(reference.shape[0], -1)
    results = []
    for i in range(reference.shape[0]):
        row = []
        for j in range(reference.shape[1]):
            label = "" if classes is None else bytes(classes.reshape(reference.shape)[i, j]).decode(
                "utf-8", "replace")
            score = 0.0 if scores is None else float(scores.reshape(reference.shape)[i, j])
            row.append([label, score])
        results.append(row)
    return results


def regress_results(outputs: dict[str, np.ndarray]) -> list[float]:
    if "outputs" not in outputs:
        raise InvalidArgument("a regress signature must return 'outputs'")
    return [float(v) for v in outputs["outputs"].reshape(-1)]
