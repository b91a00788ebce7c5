"""Prediction bodies fuzzed against a real server (hypothesis): JSON tensors of every shape and
kind for /v1 and /v2, V2 binary bodies with made-up headers and byte counts. No answer may be a
5xx, every error is the protocols' `{"error": "..."}`, and the server answers normally after.
Bounded and derandomized: the same cases every run."""
from __future__ import annotations

import json

import pytest
import requests

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MODELS = ("half_plus_two", "multi_io", "image_classifier")
BOUNDED = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                    st.fixed_dictionaries({"b64": st.text(max_size=8)}))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.sampled_from(["x", "text", "values", "count", "b64",
                                                       "image"]), inner, max_size=3),
                      max_leaves=24)
input_names = st.sampled_from(["x", "text", "values", "count", "image", "nope"])
shapes = st.lists(st.one_of(st.integers(-3, 5), st.integers(2**31, 2**64), st.booleans(),
                            st.text(max_size=2)), max_size=4)
datatypes = st.one_of(st.sampled_from(["FP32", "FP64", "INT64", "INT32", "BYTES", "BOOL", "FP16",
                                       "UINT8"]), st.text(max_size=5), st.integers())
v2_tensor = st.fixed_dictionaries(
    {"name": st.one_of(input_names, st.integers()), "shape": shapes, "datatype": datatypes},
    optional={"data": values, "parameters": st.one_of(
        st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-2, 64),
                                            "binary_data": st.booleans()}), values)})
v2_body = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(v2_tensor, max_size=3), values)},
    optional={"outputs": st.one_of(st.lists(st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["y", "upper", "output_0"]), values)}), max_size=2),
        values), "parameters": values, "id": values})
v1_body = st.one_of(
    st.fixed_dictionaries({"instances": values}, optional={"signature_name": values}),
    st.fixed_dictionaries({"inputs": values}, optional={"signature_name": values}),
    st.dictionaries(st.sampled_from(["instances", "inputs", "examples", "context"]), values),
    values)


def check(response: requests.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers.get("Content-Type") == "application/json", \
            (response.status_code, response.text)
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str)


@given(model=st.sampled_from(MODELS), verb=st.sampled_from(["predict", "classify", "regress"]),
       body=v1_body)
@BOUNDED
def test_v1_bodies(serving_server, model, verb, body):
    check(requests.post(f"{serving_server.url}/v1/models/{model}:{verb}",
                        data=json.dumps(body), timeout=30))


@given(model=st.sampled_from(MODELS), body=v2_body)
@BOUNDED
def test_v2_json_bodies(serving_server, model, body):
    check(requests.post(f"{serving_server.url}/v2/models/{model}/infer", data=json.dumps(body),
                        timeout=30))


@given(model=st.sampled_from(MODELS), body=v2_body, payload=st.binary(max_size=64),
       header_length=st.one_of(st.none(), st.integers(-1, 4096),
                               st.text(alphabet="0123456789+-. abx", min_size=1, max_size=4)))
@BOUNDED
def test_v2_binary_bodies(serving_server, model, body, payload, header_length):
    head = json.dumps(body).encode()
    declared = len(head) if header_length is None else header_length
    response = requests.post(f"{serving_server.url}/v2/models/{model}/infer",
                             data=head + payload, timeout=30,
                             headers={"Inference-Header-Content-Length": str(declared)})
    check(response)


def test_the_server_still_answers_after_the_fuzzing(serving_server):
    response = requests.post(f"{serving_server.url}/v1/models/half_plus_two:predict",
                             json={"instances": [1.0, 2.0]}, timeout=30)
    assert response.json() == {"predictions": [2.5, 3.0]}
    assert requests.get(f"{serving_server.url}/readyz", timeout=10).status_code == 200
