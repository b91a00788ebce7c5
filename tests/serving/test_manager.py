"""The model manager in process: version policies, config files, the memory budget."""
from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest

from hub.registry import Registry
from schemas.errors import InvalidArgument, ModelRuntimeError, NotAvailable, VersionNotFound
from modelhub.app import create_app
from schemas.serving import BatchingOptions, ModelConfig, load_serving_config
from serving.dataplane import DataPlane
from serving.manager import ModelManager
from serving.metrics import ServingMetrics
from serving.served import AVAILABLE, END, ServedVersion
from tests.support.apps import app_settings
from tests.support.models import half_plus, out_of_range


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


# --- the cache, the tables, errors from inside a model ---------------------------------------

def test_one_cache_serves_each_store_its_own_version(tmp_path):
    """Two stores (or one wiped and published again) with another model at the same name and
    version number: the cache is keyed by content, so each answers with its own."""
    first, second = Registry.open(str(tmp_path / "a")), Registry.open(str(tmp_path / "b"))
    first.publish(half_plus(tmp_path / "plus2", 2.0), "m")
    second.publish(half_plus(tmp_path / "plus5", 5.0), "m")
    x = {"x": np.array([2.0], np.float32)}
    for registry, expected in ((first, 3.0), (second, 6.0), (first, 3.0)):
        manager = ModelManager(registry, None, tmp_path / "cache", device="cpu", poll_seconds=0)
        manager.sync()
        served = manager.get("m", 1)
        assert served.runtime.run("serving_default", x)["y"].tolist() == [expected]
    assert len(list((tmp_path / "cache" / "m").glob("1-*"))) == 2


def test_deleted_versions_leave_the_tables_and_on_demand_locks_do_not_pile_up(registry, tmp_path):
    manager = manager_for(registry, tmp_path, [ModelConfig("hpt", policy="all")])
    assert set(states(manager, "hpt")) == {1, 2, 3}
    registry.set_alias("hpt", "stable", 3)
    manager.configs["hpt"] = ModelConfig("hpt", policy="specific", versions=[3])
    manager.sync()  # 1 and 2 are retired (END) but still published
    assert states(manager, "hpt") == {3: AVAILABLE, 2: END, 1: END}
    registry.delete_version("hpt", 1)
    manager.sync()
    assert states(manager, "hpt") == {3: AVAILABLE, 2: END}
    for _ in range(3):
        manager.get("hpt", 3)
    assert manager._load_locks == {}


def test_requests_read_the_tables_safely_while_the_sync_thread_changes_them(registry, tmp_path):
    manager = manager_for(registry, tmp_path, [ModelConfig("hpt")])
    stop, errors = threading.Event(), []

    def churn():  # what a sync does: versions come and go in the model's table
        version = 100
        while not stop.is_set():
            with manager._lock:
                manager._versions["hpt"][version] = ServedVersion("hpt", version, state=END)
            with manager._lock:
                del manager._versions["hpt"][version]
            version += 1

    def read():
        try:
            for _ in range(3000):
                manager.get("hpt")
                manager.statuses("hpt")
                manager.all_models()
        except Exception as e:  # a RuntimeError: dictionary changed size during iteration
            errors.append(e)

    writer = threading.Thread(target=churn)
    writer.start()
    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join()
    stop.set()
    writer.join()
    assert errors == []


def test_errors_from_inside_a_model_keep_tensorflows_status(tmp_path):
    registry = Registry.open(str(tmp_path / "store"))
    registry.publish(out_of_range(tmp_path / "oor"), "oor")
    metrics = ServingMetrics()
    manager = ModelManager(registry, None, tmp_path / "cache", device="cpu", poll_seconds=0,
                           batching=BatchingOptions(enabled=False), metrics=metrics)
    manager.sync()
    dataplane = DataPlane(manager, metrics)
    served = manager.get("oor")
    _, spec = dataplane.signature(served, None)
    ok = asyncio.run(dataplane.predict(served, "serving_default", spec,
                                       {"n": np.array([2], np.int64)}))
    assert ok["y"].tolist() == [0]
    with pytest.raises(ModelRuntimeError) as raised:
        asyncio.run(dataplane.predict(served, "serving_default", spec,
                                      {"n": np.array([0], np.int64)}))
    assert raised.value.grpc_code == "OUT_OF_RANGE" and raised.value.status == 400
    assert "End of sequence" in str(raised.value)
    scrape = metrics.exposition()[0].decode()
    assert ('modelhub_model_errors_total{code="OUT_OF_RANGE",model="oor",'
            'signature="serving_default",version="1"} 1.0') in scrape


def test_tf_example_signatures_warm_up_with_valid_examples(tmp_path, examples, caplog):
    registry = Registry.open(str(tmp_path / "store"))
    registry.publish(examples["half_plus_two"], "hpt")  # classify_x_to_y needs a feature x
    with caplog.at_level("INFO", logger="serving.manager"):
        manager = ModelManager(registry, None, tmp_path / "cache", device="cpu", poll_seconds=0)
        manager.sync()
    assert manager.get("hpt").state == AVAILABLE
    assert not [r for r in caplog.records if "not warmed up" in r.getMessage()]
