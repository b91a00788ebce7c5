"""Reference answers: the example models run in-process by TensorFlow, and the inputs the
prediction tests send."""
from __future__ import annotations

import functools

import numpy as np

IMAGES = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
TEXT = np.array([b"hello", b"\xff\x00bin"], dtype=object)
VALUES = np.array([[1.5, 2.0, -3.0], [0.0, 1.0, 2.0]], dtype=np.float32)
COUNT = np.array([2, 5], dtype=np.int64)


@functools.lru_cache(maxsize=None)
def local_model(path: str):
    import tensorflow as tf

    return tf.saved_model.load(path).signatures["serving_default"]


def in_process(examples, name: str, **inputs) -> dict[str, np.ndarray]:
    """What example `name` answers in this process, run by TensorFlow itself."""
    import tensorflow as tf

    outputs = local_model(str(examples[name]))(**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def half_plus(path, b: float):
    """y = 0.5 * x + b, with half_plus_two's serving signature (x float32 [-1] -> y)."""
    import tensorflow as tf

    class HalfPlus(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 0.5 * x + b}

    module = HalfPlus()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def out_of_range(path):
    """A model whose signature raises TensorFlow's OutOfRange for n summing to 0: it takes the
    first element of range(sum(n)) from a dataset iterator."""
    import tensorflow as tf

    class FirstOfRange(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="n")])
        def serve(self, n):
            first = next(iter(tf.data.Dataset.range(tf.reduce_sum(n))))
            return {"y": tf.zeros_like(n) + first}

    module = FirstOfRange()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path
