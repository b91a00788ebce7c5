"""An MLServer runtime serving a SavedModel's `serving_default` with TensorFlow, for the serving
benchmark (MLServer has no TensorFlow runtime of its own). Copied into the model repository and
run by MLServer in benchmarks/.mlserver-venv, never imported by modelhub.

With adaptive batching on, MLServer merges concurrent requests along dimension 0 before
`predict` and splits the answer back, as it does for its own runtimes.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from mlserver import MLModel  # noqa: E402
from mlserver.codecs import NumpyCodec  # noqa: E402
from mlserver.types import InferenceRequest, InferenceResponse  # noqa: E402


class SavedModelRuntime(MLModel):
    async def load(self) -> bool:
        parameters = self.settings.parameters
        self._model = tf.saved_model.load(parameters.uri)
        self._function = self._model.signatures["serving_default"]
        self._input = next(iter(self._function.structured_input_signature[1]))
        self._output = parameters.extra["output"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        outputs = self._function(**{self._input: tf.constant(rows)})
        answer = outputs[self._output].numpy()
        return InferenceResponse(model_name=self.name, model_version=self.version,
                                 outputs=[NumpyCodec.encode_output(self._output, answer)])
