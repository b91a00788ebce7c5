"""Serving never runs a graph the safety scan refuses, whoever wrote it into the store: every
attack of the zoo, planted into the store past publish, is refused before TensorFlow loads it,
and the models people publish are served as before."""
from __future__ import annotations

import numpy as np
import pytest
import requests

from hub.registry import Registry
from tests.conftest import zoo_target
from tests.support.attacks import ATTACKS, OBSERVABLE, effect_seen, signature_inputs
from tests.support.benign import BENIGN, OUTPUTS, benign_inputs
from tests.support.planting import plant_version
from tests.support.processes import running_hub


def zoo_name(attack: str) -> str:
    return "zoo-" + attack.replace("_", "-")


@pytest.fixture(scope="module")
def server(tmp_path_factory, zoo, benign):
    root = tmp_path_factory.mktemp("safety-serving")
    store = str(root / "store")
    registry = Registry.open(store)
    for attack, folder in zoo.items():
        plant_version(registry, folder, zoo_name(attack))
    # A forged verdict and a forged allowance: neither is trusted.
    plant_version(registry, zoo["write_at_load"], "forged-safe", safety={
        "safe": True, "scanner": 1, "allowlist": "x", "findings": []})
    for name, folder in benign.items():
        registry.publish(folder, name.replace("_", "-"))
    with running_hub(store, root / "server.log",
                     env={"MODELHUB_SERVING_CACHE": str(root / "cache")},
                     args=("--role", "serving", "--workers", "1", "--device", "cpu",
                           "--poll-seconds", "0")) as process:
        yield process


@pytest.mark.parametrize("attack", sorted(ATTACKS) + ["forged-safe"])
def test_a_planted_attack_is_never_loaded_and_its_status_says_why(server, zoo, attack):
    name = zoo_name(attack) if attack in ATTACKS else attack
    (status,) = requests.get(f"{server.url}/v1/models/{name}", timeout=10).json()[
        "model_version_status"]
    assert status["state"] == "END"
    assert status["status"]["error_code"] == "PERMISSION_DENIED"
    assert "reach outside the model" in status["status"]["error_message"]
    body = signature_inputs(attack, zoo_target(zoo, attack)) if attack in ATTACKS else \
        {"instances": [1.0]}
    answer = requests.post(f"{server.url}/v1/models/{name}:predict", json=body, timeout=30)
    assert answer.status_code == 503
    if attack in OBSERVABLE:
        assert not effect_seen(attack, zoo_target(zoo, attack), answer.text)


def test_nothing_any_attack_writes_exists_after_loading_and_calling(server, zoo):
    targets = zoo_target(zoo, "write_file").parent
    left = sorted(p.name for p in targets.iterdir())
    # Only what the tests themselves prepared for the reading attacks is there.
    assert left == sorted(["read_file", "read_file_from_input", "matching_files_textline",
                           "tfrecord_dataset", "fixed_length_record_dataset",
                           "immutable_const"])


def test_refusals_show_in_the_metrics(server):
    text = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10).text
    assert 'modelhub_model_refused{model="zoo-write-at-load",version="1"} 1.0' in text


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_models_people_publish_load_and_answer_as_in_process(server, benign, name):
    import tensorflow as tf

    body = benign_inputs(name)
    answer = requests.post(f"{server.url}/v1/models/{name.replace('_', '-')}:predict",
                           json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    model = tf.saved_model.load(str(benign[name])).signatures["serving_default"]
    instances = body["instances"]
    if isinstance(instances[0], dict):
        inputs = {k: tf.constant([row[k] for row in instances]) for k in instances[0]}
    else:
        (key,) = model.structured_input_signature[1]
        inputs = {key: tf.constant(instances)}
    expected = {k: v.numpy() for k, v in model(**inputs).items()}
    predictions = answer.json()["predictions"]
    if len(expected) == 1:
        got = {next(iter(expected)): np.array(predictions)}
    else:
        got = {k: np.array([row[k] for row in predictions]) for k in expected}
    assert set(got) == set(OUTPUTS[name])
    for key, value in expected.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got[key].astype(value.dtype), value, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(got[key], value)


def test_a_worker_is_confined_where_the_kernel_offers_landlock(server):
    from serving.confinement import landlock_abi

    confinement = requests.get(f"{server.url}/v2", timeout=10).json()["confinement"]
    assert confinement["enforced"] == (landlock_abi() > 0), confinement
    log = server.log_text()
    assert ("confined with Landlock" in log) == (landlock_abi() > 0)


def test_even_an_allowed_read_cannot_leave_the_worker(tmp_path_factory, zoo):
    """An admin may allow ReadFile for one model; the worker's confinement still keeps it
    from files the worker does not need (here: the attack's target in the test's folder)."""
    from hub.auth import load_secret, sign_allowance
    from hub.registry.publishing import AllowOps
    from schemas.settings import load_settings
    from serving.confinement import landlock_abi
    from tests.support.attacks import revealed

    if landlock_abi() == 0:
        pytest.skip("this kernel has no Landlock")
    root = tmp_path_factory.mktemp("allowed-read")
    registry = Registry.open(str(root / "store"))
    secret = load_secret(registry.store, load_settings({"store": str(root / "store")},
                                                       environ={}))
    registry.publish(zoo["read_file"], "allowed", allow=AllowOps(
        ("ReadFile",), "tests", lambda record: sign_allowance(secret, record)))
    with running_hub(str(root / "store"), root / "server.log",
                     env={"MODELHUB_SERVING_CACHE": str(root / "cache")},
                     args=("--role", "serving", "--workers", "1", "--device", "cpu",
                           "--poll-seconds", "0")) as process:
        (status,) = requests.get(f"{process.url}/v1/models/allowed", timeout=10).json()[
            "model_version_status"]
        assert status["state"] == "AVAILABLE"  # the allowance is genuine: it loads
        answer = requests.post(f"{process.url}/v1/models/allowed:predict",
                               json={"instances": [1.0]}, timeout=30)
        assert answer.status_code >= 400 and revealed("read_file") not in answer.text
        assert zoo_target(zoo, "read_file").read_text() == revealed("read_file")  # it is there
