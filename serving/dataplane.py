"""The data plane: what every prediction protocol shares, with no wire format in it.

A front (TF Serving REST, V2 REST, TF Serving gRPC, V2 gRPC) turns its request into names and
numpy arrays, and asks the data plane to resolve the model (a version, a label, or the newest)
and the signature, to check the inputs against the signature, and to run them through the
signature's batcher, so that requests of every protocol for one signature are merged together.
The data plane counts every request in the metrics. The front then writes the answer in its own
format.

Everything here runs on the server's event loop; the model itself runs on the batcher's threads.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from schemas.errors import InvalidArgument, ModelRuntimeError, Overloaded, TensorError

from hub.auth import Access, Identity

from .manager import ModelManager, NeedsLoad
from .metrics import ServingMetrics
from .served import ServedVersion
from .tensors import check_shape, to_array

log = logging.getLogger(__name__)


@dataclass
class Call:
    """One prediction request, for the metrics: which API, and once known, what it ran."""

    #: set by the front once it knows the request runs a model ("tfserving", "v2",
    #: "tfserving_grpc", "v2_grpc")
    api: str = ""
    started: float = field(default_factory=time.perf_counter)
    #: who asks (None: anonymous), once the front has checked the token
    identity: Identity | None = None
    model: str = ""
    version: int | str = ""
    signature: str = ""


class DataPlane:
    def __init__(self, manager: ModelManager, metrics: ServingMetrics | None = None,
                 access: Access | None = None):
        """`access`: who may read which model (None: everyone, for in-process use)."""
        self.manager = manager
        self.metrics = metrics
        self.access = access

    async def check(self, call: Call | None, name: str) -> None:
        """Raise unless the caller may read model `name` (a model of a private namespace the
        caller may not read is not found)."""
        if self.access is not None:
            await self.access.check_model_async(call.identity if call else None, "read", name)

    def visible(self, call: Call | None, names) -> list[str]:
        if self.access is None:
            return list(names)
        return self.access.filter_names(call.identity if call else None, names)

    async def served(self, name: str, version: int | None = None, label: str | None = None,
                     call: Call | None = None) -> ServedVersion:
        """The AVAILABLE version a request is for (explicit, by label, or the newest). A version
        the memory budget evicted loads again first, off the event loop."""
        await self.check(call, name)
        try:
            served = self.manager.get(name, version, label, load=False)
        except NeedsLoad:
            served = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.manager.get(name, version, label))
        if call is not None:
            call.model, call.version = served.name, served.version
        return served

    @staticmethod
    def signature(served: ServedVersion, name: str | None, call: Call | None = None
                  ) -> tuple[str, dict]:
        """The signature's name (default serving_default) and its specs from the manifest."""
        name = served.signature(name)  # raises TF Serving's message for unknown names
        if call is not None:
            call.signature = name
        return name, served.manifest["signatures"][name]

    async def predict_json(self, served: ServedVersion, signature: str, spec: dict,
                           columns: dict[str, object], deadline: float | None = None
                           ) -> dict[str, np.ndarray]:
        """Run inputs given as JSON values (one per input name)."""
        return await self._run(served, signature, arrays_from_json(columns, spec), deadline)

    async def predict(self, served: ServedVersion, signature: str, spec: dict,
                      arrays: dict[str, np.ndarray], deadline: float | None = None
                      ) -> dict[str, np.ndarray]:
        """Run inputs that arrive already typed (binary tensors, TensorProtos)."""
        check_arrays(arrays, spec)
        return await self._run(served, signature, arrays, deadline)

    async def _run(self, served: ServedVersion, signature: str, arrays: dict[str, np.ndarray],
                   deadline: float | None) -> dict[str, np.ndarray]:
        try:
            return await served.run(signature, arrays, deadline)
        except Overloaded:
            if self.metrics:
                self.metrics.batch_refused_one(served.name, served.version, signature)
            raise
        except ModelRuntimeError as e:
            log.warning("%s/%s %s: %s: %s", served.name, served.version, signature, e.grpc_code,
                        e)
            if self.metrics:
                self.metrics.model_error(served.name, served.version, signature, e.grpc_code)
            raise

    def finish(self, call: Call, status: int) -> None:
        """Count a finished prediction request (any status) in the metrics."""
        if self.metrics and call.api:
            self.metrics.observe(call.api, call.model, call.version, call.signature, status,
                                 time.perf_counter() - call.started)


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
    """For tensors that arrive already typed: names, dtypes and shapes."""
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
