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

from schemas.errors import InvalidArgument, InvalidModel, ModelRuntimeError, first_line

from .devices import load_scope


class Runtime(Protocol):
    """What runs a loaded version: named arrays in, named arrays out, per signature."""

    name: str       # "tensorflow", "tflite"
    platform: str   # the V2 protocol's model platform
    device: str     # the TensorFlow device name it runs on

    def signature_names(self) -> tuple[str, ...]: ...

    def run(self, signature_name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


#: TensorFlow's error codes are gRPC's (tensorflow/core/protobuf/error_codes.proto).
_GRPC_CODES = {1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
               5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED",
               8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
               11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
               15: "DATA_LOSS", 16: "UNAUTHENTICATED"}


#: Lines of a TensorFlow error that say where, not what.
_WHERE_LINES = ("Graph execution error", "Detected at node", "<stack traces unavailable>",
                "File \"", "[[")


def tf_error_message(error: Exception) -> str:
    """What went wrong, from a TensorFlow error: its first line that is not a header, a stack
    frame or a node annotation ("End of sequence", not "Graph execution error:")."""
    text = getattr(error, "message", None) or str(error)
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(_WHERE_LINES):
            return first_line(line)
    return first_line(error)


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
                raise InvalidArgument(tf_error_message(e)) from e
            except tf.errors.OpError as e:  # NotFound, FailedPrecondition, OutOfRange, ...
                raise ModelRuntimeError(tf_error_message(e), _GRPC_CODES.get(e.error_code,
                                                                              "UNKNOWN")) from e
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
                if signature_name not in keys:  # never another signature in its place
                    raise InvalidModel(f"{path.name} has no signature {signature_name!r} (it "
                                       f"has: {', '.join(keys) or 'none'})")
                runner = interpreter.get_signature_runner(signature_name)
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
