"""Running a request on a served version: named numpy arrays in, named numpy arrays out."""
from __future__ import annotations

import numpy as np

from schemas.errors import InvalidArgument, TensorError

from .manager import ServedVersion
from .tensors import check_shape, to_array


def signature_spec(served: ServedVersion, signature_name: str | None) -> tuple[str, dict]:
    """The signature's name and its input/output specs from the manifest."""
    name = served.signature(signature_name)  # raises the TF Serving message for unknown names
    return name, served.manifest["signatures"][name]


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


def run(served: ServedVersion, signature_name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return served.run(signature_name, arrays)
