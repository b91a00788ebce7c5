"""A real `modelhub serve` (hub + prediction APIs) with the example models published."""
from __future__ import annotations

import pytest

from hub.registry import Registry
from tests.support.processes import running_hub


@pytest.fixture(scope="session")
def serving_store(tmp_path_factory, examples) -> str:
    store = str(tmp_path_factory.mktemp("serving") / "store")
    registry = Registry.open(store)
    for name, path in examples.items():
        registry.publish(path, name, aliases=["stable"])
    return store


@pytest.fixture(scope="session")
def serving_server(serving_store, tmp_path_factory):
    log = tmp_path_factory.mktemp("serving-log") / "server.log"
    env = {"MODELHUB_SERVING_CACHE": str(tmp_path_factory.mktemp("serving-cache")),
           "MODELHUB_MAX_CONTENT_LENGTH": str(8 * 1024 * 1024)}
    with running_hub(serving_store, log, env=env,
                     args=("--role", "all", "--poll-seconds", "0.5", "--workers", "1",
                           "--device", "cpu"), grpc=True) as server:
        yield server
