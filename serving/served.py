"""A version as serving sees it: its state in TensorFlow Serving's lifecycle, the runtime that
runs it, and the batchers in front of that runtime.

States: START -> LOADING -> AVAILABLE -> UNLOADING -> END. A version at END got there one way:
its load FAILED (`error` says why; retried with back-off), it was REFUSED because the safety scan
found its graph could reach outside the model (`error` names the ops; never retried), it was
EVICTED for the memory budget (it loads again on its next request), or it was RETIRED (unloaded
because the version policy no longer wants it).
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from schemas.errors import InvalidArgument
from schemas.serving import cpu_cores

from .batching import Batcher
from .runtimes import Runtime

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
STATES = (START, LOADING, AVAILABLE, UNLOADING, END)
FAILED, REFUSED, EVICTED, RETIRED = "failed", "refused", "evicted", "retired"

MAX_LOAD_ATTEMPTS = 5
RETRY_SECONDS = 30.0
DEFAULT_SIGNATURE = "serving_default"


@dataclass
class ServedVersion:
    name: str
    version: int
    state: str = START
    #: why a version is at END: FAILED, REFUSED, EVICTED or RETIRED ("" before END)
    ended: str = ""
    #: what went wrong, when its load FAILED or it was REFUSED
    error: str = ""
    device: str = ""
    manifest: dict | None = None
    runtime: Runtime | None = None
    batchers: dict[str, Batcher] = field(default_factory=dict)
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0
    last_used: float = 0.0
    attempts: int = 0
    failed_at: float = 0.0

    @property
    def failed(self) -> bool:
        return self.ended == FAILED

    @property
    def refused(self) -> bool:
        return self.ended == REFUSED

    @property
    def evicted(self) -> bool:
        return self.ended == EVICTED

    @property
    def retired(self) -> bool:
        return self.ended == RETIRED

    def retry_due(self, now: float) -> bool:
        """A failed load is tried again, backing off: 30 s, 60 s, ... up to MAX_LOAD_ATTEMPTS."""
        return (self.failed and self.attempts < MAX_LOAD_ATTEMPTS
                and now - self.failed_at >= RETRY_SECONDS * self.attempts)

    def signature(self, name: str | None) -> str:
        """The signature's name (default: serving_default), if this version serves it."""
        name = name or DEFAULT_SIGNATURE
        served = self.runtime.signature_names()
        if name not in served:
            raise InvalidArgument(f"Serving signature name: \"{name}\" not found in signature def "
                                  f"(known: {', '.join(served)})")
        return name

    async def run(self, signature_name: str, arrays: dict[str, np.ndarray],
                  deadline: float | None = None) -> dict[str, np.ndarray]:
        """Named arrays in, named arrays out: through the signature's batcher when it has one,
        else on the shared model pool (never on the event loop)."""
        batcher = self.batchers.get(signature_name)
        if batcher is not None:
            return await batcher(arrays, deadline)
        return await asyncio.get_running_loop().run_in_executor(
            model_pool(), self.runtime.run, signature_name, arrays)


@functools.lru_cache(maxsize=1)
def model_pool() -> ThreadPoolExecutor:
    """Where calls of signatures that are not batched run: a thread per core."""
    return ThreadPoolExecutor(cpu_cores(), thread_name_prefix="model")
