"""What the Open Inference Protocol (KServe V2) means, whatever carries it: REST (`rest/v2.py`)
and gRPC (`grpc/v2.py`) send the same metadata and run the same way.

A V2 model is one of modelhub's models; its inputs and outputs are those of the signature
`serving_default`, or of the signature a request names in `parameters.signature_name`.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as package_version

import numpy as np

from schemas.errors import InvalidArgument
from schemas.inference import repeated_names

from .dataplane import Call, DataPlane
from .served import AVAILABLE, DEFAULT_SIGNATURE, ServedVersion
from .tensors import TF_TO_V2

#: The protocol extensions modelhub speaks (REST: Triton's binary tensors).
EXTENSIONS = ("binary_tensor_data",)


def server_version() -> str:
    try:
        return package_version("modelhub")
    except PackageNotFoundError:
        return "0"


def server_metadata() -> dict:
    return {"name": "modelhub", "version": server_version(), "extensions": list(EXTENSIONS)}


def datatype(dtype: str) -> str:
    """A TensorFlow dtype name as the protocol's datatype."""
    return TF_TO_V2.get(dtype, dtype.upper())


def array_datatype(array: np.ndarray) -> str:
    return datatype("string" if array.dtype == object else array.dtype.name)


def tensor_metadata(specs: dict) -> list[dict]:
    return [{"name": key, "datatype": datatype(spec["dtype"]),
             "shape": [-1] if spec["shape"] is None else list(spec["shape"])}
            for key, spec in sorted(specs.items())]


def model_metadata(dataplane: DataPlane, served: ServedVersion) -> dict:
    """Name, the versions that answer, platform, and serving_default's inputs and outputs."""
    spec = served.manifest["signatures"].get(DEFAULT_SIGNATURE, {"inputs": {}, "outputs": {}})
    versions = [str(s.version) for s in dataplane.manager.statuses(served.name)
                if s.state == AVAILABLE]
    return {"name": served.name, "versions": versions, "platform": served.runtime.platform,
            "inputs": tensor_metadata(spec["inputs"]),
            "outputs": tensor_metadata(spec["outputs"])}


def check_unique(names: list[str], what: str) -> None:
    repeated = repeated_names(names)
    if repeated:
        raise InvalidArgument(f"{what} names must be unique; repeated: {', '.join(repeated)}")


async def infer(dataplane: DataPlane, call: Call, name: str, version: int | None,
                signature_name: str | None, arrays: dict[str, np.ndarray],
                requested: list[str] | None, deadline: float | None = None
                ) -> tuple[ServedVersion, dict[str, np.ndarray]]:
    """Run one inference; the outputs asked for (all when `requested` is None), by name.
    Unknown outputs are refused before the model runs."""
    served = await dataplane.served(name, version, call=call)
    signature, spec = dataplane.signature(served, signature_name or DEFAULT_SIGNATURE, call)
    unknown = sorted(set(requested or ()) - set(spec["outputs"]))
    if unknown:
        raise InvalidArgument(f"unknown output(s) {', '.join(unknown)}; the signature has "
                              f"{', '.join(sorted(spec['outputs']))}")
    outputs = await dataplane.predict(served, signature, spec, arrays, deadline)
    if requested is not None:
        outputs = {k: outputs[k] for k in requested}
    return served, dict(sorted(outputs.items()))
