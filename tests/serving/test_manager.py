"""The model manager in process: version policies, config files, the memory budget."""
from __future__ import annotations

import json

import pytest

from hub.registry import Registry
from schemas.errors import InvalidArgument, NotAvailable, VersionNotFound
from modelhub.app import create_app
from schemas.serving import ModelConfig, load_serving_config
from serving.manager import ModelManager
from serving.served import AVAILABLE, END
from tests.support.apps import app_settings


@pytest.fixture
def registry(tmp_path, examples):
    registry = Registry.open(str(tmp_path / "store"))
    for _ in range(3):
        registry.publish(examples["half_plus_two"], "hpt")
    registry.publish(examples["multi_io"], "multi")
    registry.publish(examples["image_classifier"], "cnn")
    return registry


def manager_for(registry, tmp_path, models, **options) -> ModelManager:
    manager = ModelManager(registry, models, tmp_path / "cache", device="cpu", poll_seconds=0,
                           **options)
    manager.sync()
    return manager


def states(manager, name) -> dict[int, str]:
    return {s.version: s.state for s in manager.statuses(name)}


@pytest.mark.parametrize("config,expected", [
    (ModelConfig("hpt"), {3: AVAILABLE}),
    (ModelConfig("hpt", latest=2), {3: AVAILABLE, 2: AVAILABLE}),
    (ModelConfig("hpt", policy="all"), {3: AVAILABLE, 2: AVAILABLE, 1: AVAILABLE}),
    (ModelConfig("hpt", policy="specific", versions=[1, 9]), {1: AVAILABLE}),
])
def test_version_policies(registry, tmp_path, config, expected):
    manager = manager_for(registry, tmp_path, [config])
    assert states(manager, "hpt") == expected
    assert manager.ready()


def test_aliases_keep_their_target_loaded_and_resolve_as_labels(registry, tmp_path):
    registry.set_alias("hpt", "stable", 1)
    manager = manager_for(registry, tmp_path, [ModelConfig("hpt")])
    assert states(manager, "hpt") == {3: AVAILABLE, 1: AVAILABLE}
    assert manager.get("hpt", label="stable").version == 1
    assert manager.get("hpt").version == 3
    with pytest.raises(VersionNotFound):
        manager.get("hpt", 2)


def test_the_memory_budget_evicts_the_least_recently_used_and_reloads_on_demand(registry, tmp_path):
    sizes = {n: registry.get(n)["total_size"] for n in ("hpt", "multi", "cnn")}
    budget = sizes["cnn"] + max(sizes["hpt"], sizes["multi"])  # room for cnn and one other
    manager = manager_for(registry, tmp_path, [ModelConfig("hpt"), ModelConfig("multi"),
                                               ModelConfig("cnn")], memory_budget=budget)
    loaded = {n for n in ("hpt", "multi", "cnn") if states(manager, n) == {
        registry.resolve(n)[1]: AVAILABLE}}
    assert len(loaded) == 2  # one was evicted when the third loaded
    evicted = ({"hpt", "multi", "cnn"} - loaded).pop()
    served = manager.get(evicted)  # a request brings it back...
    assert served.state == AVAILABLE
    assert sum(1 for n in ("hpt", "multi", "cnn") for s in manager.statuses(n)
               if s.state == AVAILABLE) == 2  # ...and the least recently used goes instead
    assert any(s.state == END and s.evicted for n in loaded for s in manager.statuses(n))


def test_a_config_file_sets_policy_and_device_per_model(registry, tmp_path):
    config = tmp_path / "serving.json"
    config.write_text(json.dumps({"models": [
        {"name": "hpt", "policy": "specific", "versions": [2]},
        {"name": "multi", "device": "cpu"}]}))
    app = create_app(app_settings(str(tmp_path / "store"), role="serving",
                                  model_config=str(config), poll_seconds=0,
                                  serving_cache=str(tmp_path / "cache")))
    manager = app.extensions["manager"]
    assert manager.wait_synced(120)
    assert states(manager, "hpt") == {2: AVAILABLE}
    assert manager.get("multi").device == "/CPU:0"
    with pytest.raises(Exception):
        manager.statuses("cnn")  # not configured


@pytest.mark.parametrize("data,message", [
    ({"models": [{"name": "hpt", "policy": "specific"}]}, "needs a list of versions"),
    ({"models": [{"name": "hpt", "device": "gpu:x"}]}, "device"),
    ({"models": [{"name": "hpt", "polcy": "all"}]}, "polcy"),
    ({"model": []}, "models"),
])
def test_bad_config_files_are_clear_errors(data, message):
    with pytest.raises(InvalidArgument, match=message):
        load_serving_config(data, "serving.json")


def test_an_unavailable_device_fails_the_load_with_a_clear_error(registry, tmp_path):
    manager = manager_for(registry, tmp_path, [ModelConfig("hpt", device="gpu:3")])
    status = manager.statuses("hpt")[0]
    assert status.state == END and "gpu:3 was asked for, but this machine has" in status.error
    with pytest.raises(NotAvailable):
        manager.get("hpt")


def test_serving_everything_stays_ready_when_a_new_model_is_published(registry, tmp_path, examples):
    manager = manager_for(registry, tmp_path, None)
    assert manager.ready()
    registry.publish(examples["half_plus_two"], "newcomer")
    assert manager.ready()  # not yet loaded, but it must not take the replica out of traffic
    manager.sync()
    assert manager.get("newcomer").state == AVAILABLE and manager.ready()


def test_asking_for_a_tpu_without_one_is_a_clear_load_error(registry, tmp_path):
    # No TPU can be attached here; this shows the absent-hardware path, not TPU execution.
    manager = manager_for(registry, tmp_path, [ModelConfig("hpt", device="tpu")])
    status = manager.statuses("hpt")[0]
    assert status.state == END and "no TPU is attached" in status.error
