"""Example SavedModels that modelhub builds itself, so nothing is ever downloaded.

    python -m hub.examples OUT_DIR [--large-mb N] [--determinant]
    python -m hub.examples.demo            (make demo: publish them into MODELHUB_STORE)

- `half_plus_two`: y = 0.5 * x + 2, `x` float32 [None] -> `y` (TF Serving's classic test model).
- `image_classifier`: a small Keras CNN, 32x32x3 images -> 10 class probabilities.
- `multi_io`: named inputs of several dtypes (a string among them) and several named outputs.
- `large` (only with --large-mb): a model whose weights are N MB of random floats.
- `determinant` (only with --determinant): an op TFLite has no builtin for (MatrixDeterminant),
  for the TFLite conversion path's select-ops handling.

TensorFlow is imported inside the builders: importing it takes seconds.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTIONS = {
    "half_plus_two": "y = 0.5 * x + 2 on float32 vectors; the smallest possible SavedModel.",
    "image_classifier": "A small Keras CNN: 32x32 RGB images to 10 class probabilities.",
    "multi_io": "Named inputs of several dtypes (string, float32, int64) and several outputs.",
}


def build_half_plus_two(path: str | Path) -> Path:
    """Like TF Serving's test model: `serving_default` on a float tensor, and `classify_x_to_y`
    / `regress_x_to_y` on serialized tf.Example protos with a float feature `x`."""
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        def __init__(self):
            super().__init__()
            self.a = tf.Variable(0.5, dtype=tf.float32, name="a")
            self.b = tf.Variable(2.0, dtype=tf.float32, name="b")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": self.a * x + self.b}

        def _from_examples(self, serialized):
            features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})
            return self.a * features["x"] + self.b

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, serialized):
            return {"scores": tf.expand_dims(self._from_examples(serialized), 1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, serialized):
            return {"outputs": self._from_examples(serialized)}

    module = HalfPlusTwo()
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.serve, "classify_x_to_y": module.classify,
        "regress_x_to_y": module.regress})
    _set_method_names(Path(path), {"classify_x_to_y": "tensorflow/serving/classify",
                                   "regress_x_to_y": "tensorflow/serving/regress"})
    return Path(path)


def _set_method_names(path: Path, methods: dict[str, str]) -> None:
    """TensorFlow 2 saves every signature as a predict signature; TF Serving's :classify and
    :regress want their own method names, so they are set in saved_model.pb afterwards."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    for graph in proto.meta_graphs:
        for name, method in methods.items():
            graph.signature_def[name].method_name = method
    (path / "saved_model.pb").write_bytes(proto.SerializeToString())


def build_image_classifier(path: str | Path, seed: int = 7) -> Path:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="image_classifier")
    model.export(str(path), verbose=False)
    return Path(path)


def build_multi_io(path: str | Path) -> Path:
    import tensorflow as tf

    class MultiIO(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = tf.Variable([1.0, 2.0, 3.0], dtype=tf.float32, name="weights")

        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([None, 3], tf.float32, name="values"),
            tf.TensorSpec([None], tf.int64, name="count"),
        ])
        def serve(self, text, values, count):
            return {
                "upper": tf.strings.upper(text),
                "length": tf.strings.length(text),  # int32
                "weighted": values * self.weights * tf.cast(count, tf.float32)[:, None],
                "total": count + tf.cast(tf.reduce_sum(values, axis=1), tf.int64),
            }

    module = MultiIO()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)


def build_determinant(path: str | Path) -> Path:
    """A model using an op TFLite has no builtin kernel for: `tf.linalg.det` (MatrixDeterminant)
    of 2x2 float32 matrices, scaled by a variable. It converts only with select TF ops, which
    the LiteRT Python package cannot run (it has no Flex delegate)."""
    import tensorflow as tf

    class Determinant(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(2.0, dtype=tf.float32, name="scale")

        @tf.function(input_signature=[tf.TensorSpec([None, 2, 2], tf.float32, name="matrix")])
        def serve(self, matrix):
            return {"det": self.scale * tf.linalg.det(matrix)}

    module = Determinant()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)


def build_large(path: str | Path, megabytes: int, seed: int = 0) -> Path:
    """A SavedModel whose variables hold `megabytes` MB of random float32 (for transfer tests)."""
    import numpy as np
    import tensorflow as tf

    rows = max(1, megabytes * 1024 * 1024 // (4 * 1024))
    weights = np.random.default_rng(seed).standard_normal((rows, 1024), dtype=np.float32)

    class Large(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(weights, name="table")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="row")])
        def serve(self, row):
            return {"sum": tf.reduce_sum(tf.gather(self.table, row), axis=1)}

    module = Large()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)


BUILDERS = {
    "half_plus_two": build_half_plus_two,
    "image_classifier": build_image_classifier,
    "multi_io": build_multi_io,
}


def build_all(out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: builder(out_dir / name) for name, builder in BUILDERS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="Build modelhub's example SavedModels.")
    parser.add_argument("out_dir")
    parser.add_argument("--large-mb", type=int, default=0,
                        help="also build `large`, a model with this many MB of weights")
    parser.add_argument("--determinant", action="store_true",
                        help="also build `determinant`, which needs select TF ops as TFLite")
    args = parser.parse_args()
    for name, path in build_all(args.out_dir).items():
        print(f"{name}: {path}")
    if args.large_mb:
        print(f"large: {build_large(Path(args.out_dir) / 'large', args.large_mb)}")
    if args.determinant:
        print(f"determinant: {build_determinant(Path(args.out_dir) / 'determinant')}")

