"""A hub whose reads are private: every prediction API (REST and gRPC) and the metrics ask for a
token, with the same rules."""
from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.support.grpc_calls import half_plus_request, prediction_stub, y_values
from tests.support.processes import running_hub


@pytest.fixture(scope="module")
def private_server(serving_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("private-serving")
    with running_hub(serving_store, root / "server.log",
                     env={"MODELHUB_SERVING_CACHE": str(root / "cache"),
                          "MODELHUB_ANONYMOUS_READ": "false"},
                     args=("--role", "all", "--models", "half_plus_two", "--workers", "1",
                           "--device", "cpu"),
                     grpc=True) as server:
        yield server


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/models/half_plus_two:predict", {"instances": [1.0]}),
    ("GET", "/v1/models/half_plus_two/metadata", None),
    ("POST", "/v2/models/half_plus_two/infer",
     {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}),
    ("GET", "/monitoring/prometheus/metrics", None),
])
def test_rest_and_metrics_need_a_read_token(private_server, method, path, body):
    url = f"{private_server.url}{path}"
    anonymous = requests.request(method, url, json=body, timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    forged = requests.request(method, url, json=body, timeout=30,
                              headers=bearer("mh_0123456789abcdef_forged"))
    assert forged.status_code == 401
    allowed = requests.request(method, url, json=body, timeout=30,
                               headers=bearer(private_server.tokens["read"]))
    assert allowed.status_code == 200, allowed.text


def test_grpc_takes_the_token_as_bearer_metadata(private_server):
    import grpc
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    request = half_plus_request("half_plus_two", 1.0)
    with grpc.insecure_channel(private_server.grpc_target) as channel:
        stub = prediction_stub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=30, metadata=[("authorization", "Bearer mh_nope")])
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = stub.Predict(request, timeout=30, metadata=[
            ("authorization", f"Bearer {private_server.tokens['read']}")])
        assert y_values(answer) == [2.5]

    client = triton_grpc.InferenceServerClient(private_server.grpc_target)
    tensor = triton_grpc.InferInput("x", [1], "FP32")
    tensor.set_data_from_numpy(np.array([1.0], np.float32))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("half_plus_two", [tensor])
    assert raised.value.status() == "StatusCode.UNAUTHENTICATED"
    result = client.infer("half_plus_two", [tensor],
                          headers={"authorization": f"Bearer {private_server.tokens['read']}"})
    assert result.as_numpy("y").tolist() == [2.5]
    client.close()


def test_health_stays_open_for_probes(private_server):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    assert requests.get(f"{private_server.url}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{private_server.url}/readyz", timeout=10).status_code == 200
    with grpc.insecure_channel(private_server.grpc_target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
