"""What runs a loaded version: TensorFlow on the SavedModel, or LiteRT on its TFLite artifact.

A runtime takes named numpy arrays for one signature and returns named numpy arrays; the APIs,
the batcher and the manager see nothing else. `tflite` lets users check on the server the exact
numbers a phone or an IoT device will produce from the converted model.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from schemas.errors import InvalidArgument, InvalidModel, first_line

from .devices import load_scope


class Runtime(Protocol):
    """What runs a loaded version: named arrays in, named arrays out, per signature."""

    name: str       # "tensorflow", "tflite"
    platform: str   # the V2 protocol's model platform
    device: str     # the TensorFlow device name it runs on

    def signature_names(self) -> tuple[str, ...]: ...

    def run(self, signature_name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class TensorFlowRuntime:
    name = "tensorflow"
    platform = "tensorflow_savedmodel"

    def __init__(self, folder: Path, device: str):
        import tensorflow as tf

        self._tf = tf
        self.device = device
        with load_scope(device):
            # The loaded object owns the variables: keep it alive as long as its functions.
            self._model = tf.saved_model.load(str(folder))
        self._functions = {k: f for k, f in self._model.signatures.items() if not k.startswith("__")}
        self._names = tuple(sorted(self._functions))

    def signature_names(self) -> tuple[str, ...]:
        return self._names

    def run(self, signature_name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = self._tf
        function = self._functions[signature_name]
        with load_scope(self.device):
            try:
                outputs = function(**{k: tf.constant(v) for k, v in arrays.items()})
            except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
                raise InvalidArgument(first_line(e)) from e
        return {k: v.numpy() for k, v in outputs.items()}


class TFLiteRuntime:
    """One LiteRT interpreter per converted signature. An interpreter runs one call at a time,
    so each has a lock; the batcher turns concurrent requests into one call anyway."""

    name = "tflite"
    platform = "tflite"
    device = "/CPU:0"  # the LiteRT Python package runs on the CPU

    def __init__(self, files: dict[str, Path]):
        from ai_edge_litert.interpreter import Interpreter

        self._runners = {}
        for signature_name, path in files.items():
            try:
                interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
                keys = interpreter.get_signature_list()
                key = signature_name if signature_name in keys else next(iter(keys), None)
                if key is None:
                    raise InvalidModel(f"{path.name} has no signatures")
                runner = interpreter.get_signature_runner(key)
            except (ValueError, RuntimeError) as e:
                raise InvalidModel(f"cannot load {path.name}: {first_line(e)}") from e
            self._runners[signature_name] = (interpreter, runner, threading.Lock())
        self._names = tuple(sorted(self._runners))

    def signature_names(self) -> tuple[str, ...]:
        return self._names

    def run(self, signature_name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        _, runner, lock = self._runners[signature_name]
        with lock:
            try:
                # The runner resizes inputs to each call's batch and returns copies of outputs.
                return runner(**arrays)
            except (ValueError, RuntimeError) as e:
                raise InvalidArgument(first_line(e)) from e
