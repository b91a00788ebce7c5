"""Legitimate SavedModels the scanner must NOT flag, built with plain TensorFlow / Keras: random
weights from fixed seeds, nothing downloaded. Between them they hold what real models hold besides
plain math: the loader's own checkpoint functions (SaveV2 / RestoreV2 / MergeV2Checkpoints),
vocabulary files read from assets/ at load time, control flow (If / While), tf.image ops and
in-memory tf.data pipelines.

Each builder is `build_<name>(path) -> path` and writes a SavedModel into `path`;
`benign_inputs(name)` is a valid TF Serving :predict body for its `serving_default` signature.
What proves a model works: it loads and answers that body (outputs named in `OUTPUTS`).

TensorFlow is imported inside the builders: importing it takes seconds.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

SEED = 7
VOCABULARY = ["apple", "banana", "cherry"]  # StringLookup's vocabulary file
COLORS = ["red", "green", "blue"]  # the static hash table's asset, one key per line


def _seed():
    """Same weights on every build. (Keras layers are also named explicitly: automatic names get
    a per-process counter, which would change the checkpoint between two builds.)"""
    import keras

    keras.utils.set_random_seed(SEED)


def build_mobilenet_v2(path: Path) -> Path:
    """keras.applications.MobileNetV2(weights=None), 224x224x3 images -> 1000 class scores,
    exported with model.export (about 30 MB, about 5 s). Untrained, so every
    score is about 0.001. Input `image`, output `output_0` [None, 1000]."""
    import keras

    _seed()
    inputs = keras.Input((224, 224, 3), name="image")
    model = keras.applications.MobileNetV2(weights=None, input_tensor=inputs)
    model.export(str(path), verbose=False)
    return Path(path)


def build_lstm_batchnorm(path: Path) -> Path:
    """LSTM -> BatchNormalization -> LSTM -> Dense on sequences [None, 10, 8] (Keras lowers the
    LSTMs to While loops), exported with model.export. Input `sequence`, output `output_0`
    [None, 2]."""
    import keras

    _seed()
    inputs = keras.Input((10, 8), name="sequence")
    x = keras.layers.LSTM(16, return_sequences=True, name="lstm_1")(inputs)
    x = keras.layers.BatchNormalization(name="batch_norm")(x)
    x = keras.layers.LSTM(8, name="lstm_2")(x)
    outputs = keras.layers.Dense(2, name="dense")(x)
    keras.Model(inputs, outputs, name="lstm_batchnorm").export(str(path), verbose=False)
    return Path(path)


def build_string_lookup_vocab_file(path: Path) -> Path:
    """keras.layers.StringLookup(vocabulary=<file>) in a Keras model, exported with model.export.
    The builder writes VOCABULARY to a temporary file and deletes it after the export, so the model
    only works because the file was copied to assets/ (read at load time by
    InitializeTableFromTextFileV2). Input `words` string [None, None], output `output_0` (ids;
    0 = out of vocabulary, then 1, 2, 3)."""
    import keras

    _seed()
    with tempfile.TemporaryDirectory() as folder:
        vocabulary = Path(folder) / "vocabulary.txt"
        vocabulary.write_text("\n".join(VOCABULARY) + "\n")
        inputs = keras.Input((None,), dtype="string", name="words")
        outputs = keras.layers.StringLookup(vocabulary=str(vocabulary), name="lookup")(inputs)
        keras.Model(inputs, outputs, name="string_lookup").export(str(path), verbose=False)
    return Path(path)


def build_static_hash_table_asset(path: Path) -> Path:
    """A tf.Module holding tf.saved_model.Asset(<colors file>) and a tf.lookup.StaticHashTable
    initialised from it by a TextFileInitializer (line -> line number), saved with
    tf.saved_model.save. The source file is deleted after saving (the copy in assets/ is used).
    Input `keys` string [None], output `ids` int64 (-1 if unknown)."""
    import tensorflow as tf

    class Table(tf.Module):
        def __init__(self, file: Path):
            super().__init__()
            self.asset = tf.saved_model.Asset(str(file))
            initializer = tf.lookup.TextFileInitializer(
                self.asset, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
            self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="keys")])
        def serve(self, keys):
            return {"ids": self.table.lookup(keys)}

    with tempfile.TemporaryDirectory() as folder:
        colors = Path(folder) / "colors.txt"
        colors.write_text("\n".join(COLORS) + "\n")
        module = Table(colors)
        tf.saved_model.save(module, str(path), signatures=module.serve)
    return Path(path)


def build_image_cond(path: Path) -> Path:
    """tf.image preprocessing on images [None, 32, 32, 3]: resize to 16x16, then a tf.cond on the
    input (mean brightness > 0.5: darken and flip left-right; else brighten), then a tf.while_loop
    that blurs 3 times (2x2 average pooling). Outputs `image` [None, 16, 16, 3] and `mean`
    [None]."""
    import tensorflow as tf

    class ImagePipeline(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="image")])
        def serve(self, image):
            image = tf.image.resize(image, [16, 16])
            image = tf.cond(
                tf.reduce_mean(image) > 0.5,
                lambda: tf.image.flip_left_right(tf.image.adjust_brightness(image, -0.1)),
                lambda: tf.image.adjust_brightness(image, 0.1))

            def blur(i, img):
                return i + 1, tf.nn.avg_pool2d(img, ksize=2, strides=1, padding="SAME")

            _, image = tf.while_loop(lambda i, img: i < 3, blur, (tf.constant(0), image))
            return {"image": image, "mean": tf.reduce_mean(image, axis=[1, 2, 3])}

    module = ImagePipeline()
    tf.saved_model.save(module, str(path), signatures=module.serve)
    return Path(path)


def build_dataset_in_memory(path: Path) -> Path:
    """A signature running an in-memory tf.data pipeline on its input:
    from_tensor_slices(x).map(v * 2).batch(2).reduce(sum). Input `x` float32 [None], outputs
    `doubled` [None] (2 * x) and `total` [None] (2 * sum(x), once per row)."""
    import tensorflow as tf

    class InMemory(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            dataset = tf.data.Dataset.from_tensor_slices(x).map(lambda v: v * 2.0).batch(2)
            total = dataset.reduce(tf.constant(0.0), lambda acc, b: acc + tf.reduce_sum(b))
            return {"doubled": x * 2.0, "total": tf.fill(tf.shape(x), total)}

    module = InMemory()
    tf.saved_model.save(module, str(path), signatures=module.serve)
    return Path(path)


BENIGN: dict[str, Callable[[Path], Path]] = {
    "mobilenet_v2": build_mobilenet_v2,
    "lstm_batchnorm": build_lstm_batchnorm,
    "string_lookup_vocab_file": build_string_lookup_vocab_file,
    "static_hash_table_asset": build_static_hash_table_asset,
    "image_cond": build_image_cond,
    "dataset_in_memory": build_dataset_in_memory,
}

# The outputs of each model's serving_default signature.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "mobilenet_v2": ("output_0",),
    "lstm_batchnorm": ("output_0",),
    "string_lookup_vocab_file": ("output_0",),
    "static_hash_table_asset": ("ids",),
    "image_cond": ("image", "mean"),
    "dataset_in_memory": ("doubled", "total"),
}
assert OUTPUTS.keys() == BENIGN.keys()


def _grid(*shape: int, scale: float = 1.0) -> list:
    """A deterministic nested list of floats in [0, scale) of the given shape (no numpy needed)."""
    def fill(dims: tuple[int, ...], offset: int) -> list:
        if len(dims) == 1:
            return [round(((offset + i) * 37 % 101) / 101 * scale, 4) for i in range(dims[0])]
        size = 1
        for d in dims[1:]:
            size *= d
        return [fill(dims[1:], offset + i * size) for i in range(dims[0])]
    return fill(shape, 0)


def benign_inputs(name: str) -> dict:
    """A valid TF Serving :predict body for model `name`'s serving_default signature (row format,
    {"instances": [...]}, one row per example)."""
    if name == "mobilenet_v2":
        return {"instances": _grid(1, 224, 224, 3)}
    if name == "lstm_batchnorm":
        return {"instances": _grid(2, 10, 8)}
    if name == "string_lookup_vocab_file":
        return {"instances": [["apple", "cherry", "durian"], ["banana", "apple", "apple"]]}
    if name == "static_hash_table_asset":
        return {"instances": ["red", "blue", "purple"]}
    if name == "image_cond":
        return {"instances": _grid(2, 32, 32, 3)}
    if name == "dataset_in_memory":
        return {"instances": [1.0, 2.0, 3.5]}
    raise KeyError(name)
