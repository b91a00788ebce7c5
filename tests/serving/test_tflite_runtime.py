"""The `tflite` runtime: a version's TFLite artifact answers over HTTP with exactly the numbers
the LiteRT interpreter gives in-process, and says so."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import requests

from hub.conversion import convert
from hub.registry import Registry
from schemas.errors import InvalidModel, NotAvailable
from schemas.serving import ModelConfig
from serving.manager import ModelManager
from serving.served import END
from tests.support.processes import running_hub

IMAGES = np.random.default_rng(11).random((3, 32, 32, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def tflite_server(tmp_path_factory, examples):
    root = tmp_path_factory.mktemp("tflite-serving")
    store = str(root / "store")
    registry = Registry.open(store)
    for name in ("image_classifier", "half_plus_two", "multi_io"):
        registry.publish(examples[name], name)
    convert(registry, "image_classifier/1", quantize="dynamic")
    config = root / "serving.json"
    config.write_text(json.dumps({"models": [
        {"name": "image_classifier", "runtime": "tflite", "quantize": "dynamic"},
        {"name": "multi_io"},  # the server's default runtime
    ]}))
    env = {"MODELHUB_SERVING_CACHE": str(root / "cache")}
    with running_hub(store, root / "server.log", env=env,
                     args=("--role", "serving", "--workers", "1", "--model-config", str(config),
                           "--device", "cpu", "--poll-seconds", "0")) as server:
        server.registry = registry
        server.root = root
        yield server


def litert_outputs(server, images: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    path = server.root / "image_classifier-dynamic.tflite"
    if not path.exists():
        server.registry.pull_artifact("image_classifier/1", "tflite-dynamic", path)
    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
    return interpreter.get_signature_runner("serving_default")(image=images)["output_0"]


def test_predictions_equal_the_litert_interpreter_in_process(tflite_server):
    expected = litert_outputs(tflite_server, IMAGES)
    rows = requests.post(f"{tflite_server.url}/v1/models/image_classifier:predict",
                         json={"instances": IMAGES.tolist()}, timeout=30)
    assert rows.status_code == 200, rows.text
    assert rows.headers["Modelhub-Runtime"] == "tflite"
    np.testing.assert_array_equal(np.array(rows.json()["predictions"], np.float32), expected)
    v2 = requests.post(f"{tflite_server.url}/v2/models/image_classifier/infer", json={"inputs": [
        {"name": "image", "shape": list(IMAGES.shape), "datatype": "FP32",
         "data": IMAGES.reshape(-1).tolist()}]}, timeout=30)
    assert v2.status_code == 200, v2.text
    output = v2.json()["outputs"][0]
    np.testing.assert_array_equal(np.array(output["data"], np.float32).reshape(output["shape"]),
                                  expected)


def test_the_tflite_answer_is_close_to_but_not_the_savedmodels(tflite_server, examples):
    import tensorflow as tf

    model = tf.saved_model.load(str(examples["image_classifier"])).signatures["serving_default"]
    saved_model = model(image=tf.constant(IMAGES))["output_0"].numpy()
    served = np.array(requests.post(f"{tflite_server.url}/v1/models/image_classifier:predict",
                                    json={"instances": IMAGES.tolist()}, timeout=30)
                      .json()["predictions"], np.float32)
    np.testing.assert_allclose(served, saved_model, atol=0.05)
    assert (served.argmax(1) == saved_model.argmax(1)).all()


def test_status_and_metadata_say_which_runtime_answers(tflite_server):
    url = tflite_server.url
    metadata = requests.get(f"{url}/v1/models/image_classifier/metadata", timeout=10)
    assert metadata.json()["metadata"]["modelhub"] == {"device": "/CPU:0", "runtime": "tflite"}
    assert list(metadata.json()["metadata"]["signature_def"]["signature_def"]) == ["serving_default"]
    status = requests.get(f"{url}/v1/models/image_classifier", timeout=10)
    assert status.headers["Modelhub-Runtime"] == "tflite"
    v2 = requests.get(f"{url}/v2/models/image_classifier", timeout=10).json()
    assert v2["platform"] == "tflite" and v2["parameters"]["runtime"] == "tflite"
    other = requests.get(f"{url}/v1/models/multi_io/metadata", timeout=10).json()
    assert other["metadata"]["modelhub"]["runtime"] == "tensorflow"


def test_a_version_without_the_artifact_fails_its_load_with_the_command_to_fix_it(tflite_server,
                                                                                 tmp_path):
    manager = ModelManager(tflite_server.registry,
                           [ModelConfig("half_plus_two", runtime="tflite", quantize="int8")],
                           tmp_path, poll_seconds=0)
    manager.sync()
    (version,) = manager.statuses("half_plus_two")
    assert version.state == END
    assert "modelhub convert half_plus_two/1 --to tflite --quantize int8" in version.error
    with pytest.raises(NotAvailable):
        manager.get("half_plus_two")
    # Converted later: the next poll loads it (a missing artifact is not a failed attempt).
    convert(tflite_server.registry, "half_plus_two/1", quantize="int8")
    manager.sync()
    assert manager.get("half_plus_two").runtime.name == "tflite"


def test_an_unconverted_signature_is_not_served(tflite_server):
    response = requests.post(f"{tflite_server.url}/v1/models/image_classifier:predict",
                             json={"signature_name": "other", "instances": IMAGES[:1].tolist()},
                             timeout=10)
    assert response.status_code == 400
    assert "not found in signature def" in response.json()["error"]


def test_an_artifact_that_needs_select_tf_ops_is_refused_with_a_clear_error(tflite_server,
                                                                            tmp_path):
    from hub.examples import build_determinant

    registry = tflite_server.registry
    registry.publish(build_determinant(tmp_path / "det"), "determinant")
    convert(registry, "determinant/1", quantize="none", allow_select_tf_ops=True)
    manager = ModelManager(registry, [ModelConfig("determinant", runtime="tflite",
                                                  quantize="none")], tmp_path / "cache",
                           poll_seconds=0)
    manager.sync()
    (version,) = manager.statuses("determinant")
    assert version.state == END
    assert "MatrixDeterminant" in version.error and "--runtime tensorflow" in version.error


def test_a_signature_the_artifact_lacks_is_refused_not_swapped(tflite_server, tmp_path):
    from serving.runtimes import TFLiteRuntime

    path = tmp_path / "model.tflite"
    tflite_server.registry.pull_artifact("image_classifier/1", "tflite-dynamic", path)
    assert TFLiteRuntime({"serving_default": path}).signature_names() == ("serving_default",)
    with pytest.raises(InvalidModel, match="has no signature 'classify'"):
        TFLiteRuntime({"classify": path})  # never the file's only signature in its place
