"""Shared fixtures: a real S3-protocol server on loopback, stores of every kind, example models,
the app in-process (Flask's test client) and, where the process itself is under test, a real
`modelhub serve`. Helpers live in `tests/support`."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.support.apps import InProcessHub
from tests.support.processes import running_hub, start_s3_server

# Quiet TensorFlow's C++ logging in every process the tests start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def s3_endpoint():
    process, endpoint = start_s3_server()
    # boto3's standard configuration; subprocesses started by tests inherit it.
    os.environ.update({
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint) -> str:
    """A fresh bucket per test, so tests never see each other's objects."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def make_store(kind: str, tmp_path: Path, request):
    from storage.local import LocalStore
    from storage.s3 import S3Store

    if kind == "local":
        return LocalStore(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(bucket, prefix="hub")


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The same tests run over every store."""
    return make_store(request.param, tmp_path, request)


@pytest.fixture
def registry(store):
    from hub.registry import Registry

    return Registry(store)


@pytest.fixture(scope="session")
def examples(tmp_path_factory) -> dict[str, Path]:
    """The example SavedModels, built once per session."""
    from hub.examples import build_all

    return build_all(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="session")
def hub_app(tmp_path_factory) -> InProcessHub:
    """One in-process hub for the session (tests use their own model names). Uploads are capped
    at 4 MiB so the limit can be shown with small bodies."""
    return InProcessHub(str(tmp_path_factory.mktemp("hub-app") / "store"),
                        max_upload_bytes=4 * 1024 * 1024)


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """One real hub process for the session, for what needs HTTP itself (the SDK, the CLI,
    tensorflow_hub, cut connections, gunicorn's limits and logs)."""
    root = tmp_path_factory.mktemp("hub")
    with running_hub(str(root / "store"), root / "server.log",
                     env={"MODELHUB_MAX_UPLOAD_BYTES": str(4 * 1024 * 1024),
                          "MODELHUB_ACCESS_LOG": "true"}) as server:
        yield server


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> dict[str, Path]:
    """Every attack of the zoo, built once; each bakes a path under `targets/` into its graph
    (`zoo_target`), and what the reading ones read is put there."""
    from tests.support.attacks import ATTACKS, prepare_target

    root = tmp_path_factory.mktemp("zoo")
    (root / "targets").mkdir()
    models = {}
    for name, build in ATTACKS.items():
        prepare_target(name, root / "targets" / name)
        models[name] = build(root / "models" / name, root / "targets" / name)
    return models


def zoo_target(zoo: dict[str, Path], name: str) -> Path:
    """The path attack `name` reads or writes."""
    return zoo[name].parent.parent / "targets" / name


@pytest.fixture(scope="session")
def benign(tmp_path_factory) -> dict[str, Path]:
    from tests.support.benign import BENIGN

    root = tmp_path_factory.mktemp("benign")
    return {name: build(root / name) for name, build in BENIGN.items()}


@pytest.fixture
def unique_name(request) -> str:
    """A model name no other test uses, for tests sharing the session hub."""
    return f"t{uuid.uuid4().hex[:10]}"
