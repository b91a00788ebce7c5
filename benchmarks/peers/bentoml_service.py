"""A BentoML service serving a SavedModel's `serving_default` with TensorFlow and BentoML's
adaptive batching, for the serving benchmark. Run by `bentoml serve` in
benchmarks/.bentoml-venv, never imported by modelhub:

    BENCH_SAVED_MODEL=DIR BENCH_OUTPUT=NAME bentoml serve bentoml_service:SavedModel --port P

`POST /predict` with `{"x": [[...one row...]]}` answers the row's prediction.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bentoml  # noqa: E402
import numpy as np  # noqa: E402


@bentoml.service(workers=1, traffic={"timeout": 120, "max_concurrency": 256})
class SavedModel:
    def __init__(self) -> None:
        import tensorflow as tf

        self._tf = tf
        self._model = tf.saved_model.load(os.environ["BENCH_SAVED_MODEL"])
        self._function = self._model.signatures["serving_default"]
        self._input = next(iter(self._function.structured_input_signature[1]))
        self._output = os.environ["BENCH_OUTPUT"]

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=32, max_latency_ms=1000)
    def predict(self, x: np.ndarray) -> np.ndarray:
        outputs = self._function(**{self._input: self._tf.constant(x.astype(np.float32))})
        return outputs[self._output].numpy()
