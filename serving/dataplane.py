"""The data plane: what every prediction protocol shares, with no wire format in it.

A front (TF Serving REST, V2 REST, gRPC) turns its request into names and numpy arrays, and asks
the data plane to resolve the model (a version, a label, or the newest) and the signature, to
check the inputs against the signature, and to run them (through the signature's batcher, so
requests of every protocol for one signature are merged together). The front then writes the
answer in its own format.
"""
from __future__ import annotations

import numpy as np

from schemas.errors import InvalidArgument, TensorError

from .manager import ModelManager
from .served import ServedVersion
from .tensors import check_shape, to_array


class DataPlane:
    def __init__(self, manager: ModelManager):
        self.manager = manager

    def served(self, name: str, version: int | None = None,
               label: str | None = None) -> ServedVersion:
        """The AVAILABLE version a request is for (explicit, by label, or the newest)."""
        return self.manager.get(name, version, label)

    def signature(self, served: ServedVersion, name: str | None) -> tuple[str, dict]:
        """The signature's name (default serving_default) and its specs from the manifest."""
        name = served.signature(name)  # raises TF Serving's message for unknown names
        return name, served.manifest["signatures"][name]

    def predict_json(self, served: ServedVersion, signature: str, spec: dict,
                     columns: dict[str, object]) -> dict[str, np.ndarray]:
        """Run inputs given as JSON values (one per input name)."""
        return served.run(signature, arrays_from_json(columns, spec))

    def predict(self, served: ServedVersion, signature: str, spec: dict,
                arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run inputs that arrive already typed (binary tensors)."""
        check_arrays(arrays, spec)
        return served.run(signature, arrays)


def arrays_from_json(columns: dict[str, object], spec: dict) -> dict[str, np.ndarray]:
    """Every input of the signature from JSON values, checked against its dtype and shape."""
    inputs = spec["inputs"]
    unknown = sorted(set(columns) - set(inputs))
    if unknown:
        raise InvalidArgument(f"unknown input(s) {', '.join(unknown)}; the signature takes "
                              f"{', '.join(sorted(inputs))}")
    missing = sorted(set(inputs) - set(columns))
    if missing:
        raise InvalidArgument(f"missing input(s) {', '.join(missing)}")
    arrays = {}
    for key, value in columns.items():
        array = to_array(value, inputs[key]["dtype"], f"input {key}")
        check_shape(array, inputs[key]["shape"], f"input {key}")
        arrays[key] = array
    return arrays


def check_arrays(arrays: dict[str, np.ndarray], spec: dict) -> None:
    """For tensors that arrive already typed (binary V2 data): names, dtypes and shapes."""
    inputs = spec["inputs"]
    for key, array in arrays.items():
        if key not in inputs:
            raise InvalidArgument(f"unknown input {key}; the signature takes "
                                  f"{', '.join(sorted(inputs))}")
        expected = inputs[key]["dtype"]
        actual = "string" if array.dtype == object else array.dtype.name
        if actual != expected:
            raise TensorError(f"input {key}: dtype {actual} does not match the signature's "
                              f"{expected}")
        check_shape(array, inputs[key]["shape"], f"input {key}")
    missing = sorted(set(inputs) - set(arrays))
    if missing:
        raise InvalidArgument(f"missing input(s) {', '.join(missing)}")
