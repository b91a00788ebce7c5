"""Namespaces on the prediction APIs of a real server: `NAMESPACE/NAME` in TF Serving's and
the V2 URLs (a plain slash, as tritonclient and curl send it), in gRPC model specs, and a private
namespace that does not exist for callers who may not read it, on every route and protocol,
metrics included."""
from __future__ import annotations

import numpy as np
import pytest
import requests

from hub.registry import Registry
from tests.hub.test_namespaces import make_token
from tests.support.grpc_calls import half_plus_request, prediction_stub, y_values
from tests.support.processes import running_hub

X = {"instances": [1.0, 2.0]}


@pytest.fixture(scope="module")
def namespaced_server(tmp_path_factory, examples):
    root = tmp_path_factory.mktemp("namespaced")
    store = str(root / "store")
    registry = Registry.open(store)
    registry.create_namespace("nlp", private=True)
    for name in ("nlp/hpt", "vision/hpt"):
        registry.publish(examples["half_plus_two"], name)
    with running_hub(store, root / "server.log",
                     env={"MODELHUB_SERVING_CACHE": str(root / "cache")},
                     args=("--role", "all", "--workers", "1", "--device", "cpu"),
                     grpc=True) as server:
        server.readers = {ns: make_token(store, f"read:{ns}") for ns in ("nlp", "vision")}
        yield server


def bearer(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token}"} if token else {}


def test_namespaced_models_answer_on_v1_and_v2_urls(namespaced_server):
    url = namespaced_server.url
    assert requests.post(f"{url}/v1/models/vision/hpt:predict", json=X,
                         timeout=30).json() == {"predictions": [2.5, 3.0]}
    assert requests.post(f"{url}/v1/models/vision%2Fhpt/versions/1:predict", json=X,
                         timeout=30).json() == {"predictions": [2.5, 3.0]}
    import tritonclient.http as triton_http

    client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    tensor = triton_http.InferInput("x", [2], "FP32")
    tensor.set_data_from_numpy(np.array([1.0, 2.0], np.float32))
    assert client.infer("vision/hpt", [tensor]).as_numpy("y").tolist() == [2.5, 3.0]
    assert client.get_model_metadata("vision/hpt")["name"] == "vision/hpt"


@pytest.mark.parametrize("who", [None, "vision"])
def test_a_private_namespace_does_not_exist_for_outsiders(namespaced_server, who):
    url, token = namespaced_server.url, namespaced_server.readers.get(who)
    for method, path, body in (("POST", "/v1/models/nlp/hpt:predict", X),
                               ("GET", "/v1/models/nlp/hpt", None),
                               ("GET", "/v1/models/nlp/hpt/metadata", None),
                               ("GET", "/v2/models/nlp/hpt", None),
                               ("GET", "/v2/models/nlp/hpt/ready", None),
                               ("POST", "/v2/models/nlp/hpt/infer",
                                {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                                             "data": [1.0]}]})):
        response = requests.request(method, url + path, json=body, headers=bearer(token),
                                    timeout=30)
        assert response.status_code == 404, (path, response.text)
    listed = {m["name"] for m in requests.get(f"{url}/v1/models", headers=bearer(token),
                                              timeout=30).json()["models"]}
    assert "vision/hpt" in listed and "nlp/hpt" not in listed


def test_a_read_grant_on_nlp_opens_it_on_rest_and_grpc(namespaced_server):
    url, reader = namespaced_server.url, namespaced_server.readers["nlp"]
    assert requests.post(f"{url}/v1/models/nlp/hpt:predict", json=X, headers=bearer(reader),
                         timeout=30).json() == {"predictions": [2.5, 3.0]}
    import grpc

    request = half_plus_request("nlp/hpt", 1.0)
    with grpc.insecure_channel(namespaced_server.grpc_target) as channel:
        stub = prediction_stub(channel)
        for token in (None, namespaced_server.readers["vision"]):
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(request, timeout=30, metadata=[("authorization", f"Bearer {token}")]
                             if token else None)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        answer = stub.Predict(request, timeout=30,
                              metadata=[("authorization", f"Bearer {reader}")])
        assert y_values(answer) == [2.5]


def test_metrics_show_only_the_models_the_caller_may_read(namespaced_server):
    url, reader = namespaced_server.url, namespaced_server.readers["nlp"]
    requests.post(f"{url}/v1/models/nlp/hpt:predict", json=X, headers=bearer(reader), timeout=30)
    outsider = requests.get(f"{url}/monitoring/prometheus/metrics", timeout=30).text
    insider = requests.get(f"{url}/monitoring/prometheus/metrics", headers=bearer(reader),
                           timeout=30).text
    assert 'model="nlp/hpt"' not in outsider and 'model="vision/hpt"' in outsider
    assert 'model="nlp/hpt"' in insider
