"""Predictions over TF Serving's /v1 and the Open Inference /v2 equal in-process TensorFlow."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests

from tests.support.models import COUNT, IMAGES, TEXT, VALUES, in_process


def post(server, path: str, body) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, timeout=30)


def b64(value: bytes) -> dict:
    return {"b64": base64.b64encode(value).decode()}


def decode_strings(values) -> list[bytes]:
    return [base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode() for v in values]


def test_half_plus_two_rows_and_columns(serving_server, examples):
    expected = in_process(examples, "half_plus_two", x=np.array([1.0, 2.0, 5.0], np.float32))["y"]
    rows = post(serving_server, "/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]})
    assert rows.json() == {"predictions": expected.tolist()}
    columns = post(serving_server, "/v1/models/half_plus_two/versions/1:predict",
                   {"signature_name": "serving_default", "inputs": {"x": [1.0, 2.0, 5.0]}})
    assert columns.json() == {"outputs": expected.tolist()}
    labelled = post(serving_server, "/v1/models/half_plus_two/labels/stable:predict",
                    {"instances": [{"x": 1.0}, {"x": 2.0}, {"x": 5.0}]})
    assert labelled.json() == {"predictions": expected.tolist()}


def test_image_classifier_over_v1_and_v2(serving_server, examples):
    expected = in_process(examples, "image_classifier", image=IMAGES)["output_0"]
    rows = post(serving_server, "/v1/models/image_classifier:predict", {"instances": IMAGES.tolist()})
    np.testing.assert_array_equal(np.array(rows.json()["predictions"], np.float32), expected)
    v2 = post(serving_server, "/v2/models/image_classifier/infer", {"inputs": [
        {"name": "image", "shape": list(IMAGES.shape), "datatype": "FP32",
         "data": IMAGES.reshape(-1).tolist()}]})
    output = v2.json()["outputs"][0]
    assert (output["name"], output["datatype"], output["shape"]) == ("output_0", "FP32", [2, 10])
    np.testing.assert_array_equal(np.array(output["data"], np.float32).reshape(2, 10), expected)


def test_multi_io_with_strings_b64_and_several_outputs(serving_server, examples):
    expected = in_process(examples, "multi_io", text=TEXT, values=VALUES, count=COUNT)
    columns = post(serving_server, "/v1/models/multi_io:predict", {"inputs": {
        "text": ["hello", b64(b"\xff\x00bin")], "values": VALUES.tolist(), "count": COUNT.tolist()}})
    outputs = columns.json()["outputs"]
    assert decode_strings(outputs["upper"]) == list(expected["upper"])
    assert outputs["length"] == expected["length"].tolist()
    assert outputs["total"] == expected["total"].tolist()
    np.testing.assert_array_equal(np.array(outputs["weighted"], np.float32), expected["weighted"])

    rows = post(serving_server, "/v1/models/multi_io:predict", {"instances": [
        {"text": "hello", "values": VALUES[0].tolist(), "count": 2},
        {"text": b64(b"\xff\x00bin"), "values": VALUES[1].tolist(), "count": 5}]})
    predictions = rows.json()["predictions"]
    assert [p["total"] for p in predictions] == expected["total"].tolist()
    assert decode_strings([p["upper"] for p in predictions]) == list(expected["upper"])

    v2 = post(serving_server, "/v2/models/multi_io/infer", {"inputs": [
        {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["hello", "abc"]},
        {"name": "values", "shape": [2, 3], "datatype": "FP32", "data": VALUES.reshape(-1).tolist()},
        {"name": "count", "shape": [2], "datatype": "INT64", "data": COUNT.tolist()}]})
    by_name = {o["name"]: o for o in v2.json()["outputs"]}
    assert by_name["upper"]["data"] == ["HELLO", "ABC"]
    assert by_name["length"]["datatype"] == "INT32" and by_name["length"]["data"] == [5, 3]


def test_status_metadata_and_model_list(serving_server):
    status = requests.get(f"{serving_server.url}/v1/models/multi_io").json()
    assert status == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    metadata = requests.get(f"{serving_server.url}/v1/models/multi_io/versions/1/metadata").json()
    assert metadata["model_spec"] == {"name": "multi_io", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["text"]["dtype"] == "DT_STRING"
    assert signature["inputs"]["values"]["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}], "unknown_rank": False}
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert metadata["metadata"]["modelhub"] == {"device": "/CPU:0", "runtime": "tensorflow"}
    listed = {m["name"] for m in requests.get(f"{serving_server.url}/v1/models").json()["models"]}
    assert {"half_plus_two", "image_classifier", "multi_io"} <= listed


#: A valid V2 input for half_plus_two.
X = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}


@pytest.mark.parametrize("path,body,status,message", [
    ("/v1/models/half_plus_two:predict", {"instances": [[1.0, 2.0]]}, 400, "shape"),
    ("/v1/models/half_plus_two:predict", {"instances": ["a", "b"]}, 400, "expected float32"),
    ("/v1/models/multi_io:predict", {"inputs": {"text": ["a"], "values": [[1, 2, 3]],
                                                "count": [1.5]}}, 400, "fractional"),
    ("/v1/models/half_plus_two:predict", {"signature_name": "nope", "instances": [1.0]}, 400,
     "\"nope\" not found in signature def"),
    ("/v1/models/half_plus_two:predict", {"instances": [1.0], "inputs": [1.0]}, 400,
     "exactly one of"),
    ("/v1/models/half_plus_two:predict", {"inputs": {"y": [1.0]}}, 400, "unknown input"),
    ("/v1/models/multi_io:predict", {"instances": [1, 2]}, 400, "several inputs"),
    ("/v1/models/missing:predict", {"instances": [1.0]}, 404, "Servable not found"),
    ("/v1/models/half_plus_two/versions/9:predict", {"instances": [1.0]}, 404, "Specific"),
    ("/v1/models/half_plus_two/labels/nope:predict", {"instances": [1.0]}, 404,
     "Unrecognized servable version label"),
    ("/v1/models/half_plus_two:explode", {"instances": [1.0]}, 404, "Malformed request"),
    ("/v2/models/half_plus_two/infer", {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32",
                                                    "data": [1, 2]}]}, 400, "values for shape"),
    ("/v2/models/half_plus_two/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32",
                                                    "data": [1]}]}, 400, "dtype int32"),
    ("/v2/models/half_plus_two/infer", {"inputs": [{"name": "x", "shape": [1], "datatype": "FP99",
                                                    "data": [1]}]}, 400, "unknown datatype"),
    ("/v2/models/half_plus_two/infer", {"nothing": 1}, 400, "inputs: Missing data"),
    # every part of a V2 body is checked before anything runs
    ("/v2/models/half_plus_two/infer", {"inputs": [{"name": "x", "shape": [1],
                                                    "datatype": ["FP32"], "data": [1]}]}, 400,
     "inputs.0.datatype: Not a valid string"),
    ("/v2/models/half_plus_two/infer", {"inputs": [{"name": {"x": 1}, "shape": [1],
                                                    "datatype": "FP32", "data": [1]}]}, 400,
     "inputs.0.name: Not a valid string"),
    ("/v2/models/half_plus_two/infer", {"parameters": [], "inputs": [X]}, 400,
     "parameters: Invalid input type"),
    ("/v2/models/half_plus_two/infer", {"parameters": "x", "inputs": [X]}, 400,
     "parameters: Invalid input type"),
    ("/v2/models/half_plus_two/infer", {"inputs": [X], "outputs": "y"}, 400,
     "outputs: Not a valid list"),
    ("/v2/models/half_plus_two/infer", {"inputs": [X], "outputs": ["y"]}, 400,
     "outputs.0: Invalid input type"),
    ("/v2/models/half_plus_two/infer", {"inputs": [X], "outputs": [1]}, 400,
     "outputs.0: Invalid input type"),
    ("/v2/models/half_plus_two/infer", {"inputs": [X], "outputs": [{}]}, 400,
     "outputs.0.name: Missing data"),
    ("/v2/models/half_plus_two/infer", {"inputs": [X], "outputs": [{"name": "nope"}]}, 400,
     "unknown output(s) nope"),
    ("/v2/models/half_plus_two/infer", {"inputs": [{**X, "shape": [True, True]}]}, 400,
     "inputs.0.shape.0: Not a valid integer"),
    ("/v2/models/half_plus_two/infer", {"inputs": [X, X]}, 400, "repeated: x"),
    # element counts that overflow a 64-bit product
    ("/v2/models/half_plus_two/infer", {"inputs": [{**X, "shape": [2**32, 2**32]}]}, 400,
     "more than a tensor may hold"),
    ("/v2/models/half_plus_two/infer", {"inputs": [{**X, "shape": [2**62, 4]}]}, 400,
     "more than a tensor may hold"),
    # silent coercions are errors
    ("/v2/models/multi_io/infer", {"inputs": [
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]},
        {"name": "values", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
        {"name": "count", "shape": [1], "datatype": "INT64", "data": [-2**63 - 1]}]}, 400,
     "integers beyond"),
    ("/v1/models/half_plus_two:predict", {"instances": [True, 1.5]}, 400, "got true/false"),
    ("/v1/models/half_plus_two:predict", {"instances": [True]}, 400, "got true/false"),
    # routing errors under /v1 and /v2 keep the protocols' shape
    ("/v1/foo", {}, 404, "Malformed request"),
    ("/v2/foo", {}, 404, "no such endpoint"),
])
def test_bad_requests_get_tf_serving_error_bodies(serving_server, path, body, status, message):
    response = post(serving_server, path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and message in error


def test_wrong_methods_answer_405_in_the_protocols_shape(serving_server):
    for method, path in (("PUT", "/v1/models/half_plus_two:predict"),
                         ("DELETE", "/v1/models/half_plus_two"),
                         ("GET", "/v2/models/half_plus_two/infer"),
                         ("POST", "/v2/health/live")):
        response = requests.request(method, f"{serving_server.url}{path}", timeout=30)
        assert response.status_code == 405, (method, path, response.text)
        assert set(response.json()) == {"error"}


def test_strings_nested_deeper_than_a_tensor_can_be_are_refused(serving_server):
    deep = "x"
    for _ in range(600):
        deep = [deep]
    response = post(serving_server, "/v1/models/multi_io:predict", {"inputs": {
        "text": deep, "values": VALUES.tolist(), "count": COUNT.tolist()}})
    assert response.status_code == 400 and "error" in response.json()


def test_binary_v2_tensors_are_checked_to_the_last_byte(serving_server):
    data = np.array([1.0, 2.0], "<f4").tobytes()

    def send(header: dict, payload: bytes) -> requests.Response:
        head = json.dumps(header).encode()
        return requests.post(f"{serving_server.url}/v2/models/half_plus_two/infer",
                             data=head + payload, timeout=30,
                             headers={"Inference-Header-Content-Length": str(len(head))})

    tensor = {"name": "x", "shape": [2], "datatype": "FP32",
              "parameters": {"binary_data_size": len(data)}}
    good = send({"inputs": [tensor]}, data)
    assert good.status_code == 200 and good.json()["outputs"][0]["data"] == [2.5, 3.0]
    trailing = send({"inputs": [tensor]}, data + b"\0\0\0\0")
    assert trailing.status_code == 400 and "bytes follow the last binary tensor" in \
        trailing.json()["error"]
    huge = send({"inputs": [{**tensor, "shape": [2**32, 2**32]}]}, data)
    assert huge.status_code == 400 and "more than a tensor may hold" in huge.json()["error"]
    short = send({"inputs": [{**tensor, "shape": [3]}]}, data)
    assert short.status_code == 400 and "bytes of binary data" in short.json()["error"]


def test_malformed_json_and_oversized_bodies(serving_server):
    bad = requests.post(f"{serving_server.url}/v1/models/half_plus_two:predict", data=b"{nope")
    assert bad.status_code == 400 and "JSON Parse error" in bad.json()["error"]
    big = b'{"instances": [' + b"1.0," * (3 * 1024 * 1024) + b"1.0]}"  # 12 MiB, limit 8 MiB
    too_big = requests.post(f"{serving_server.url}/v1/models/half_plus_two:predict", data=big)
    assert too_big.status_code == 413 and "error" in too_big.json()
    v2 = requests.post(f"{serving_server.url}/v2/models/half_plus_two/infer", data=b"[1,")
    assert v2.status_code == 400 and "malformed JSON" in v2.json()["error"]


def test_metrics_count_requests_by_model_version_signature_and_status(serving_server):
    post(serving_server, "/v1/models/half_plus_two:predict", {"instances": [1.0]})
    post(serving_server, "/v1/models/half_plus_two:predict", {"instances": ["x"]})
    text = requests.get(f"{serving_server.url}/monitoring/prometheus/metrics").text
    ok = ('modelhub_requests_total{api="tfserving",model="half_plus_two",signature="serving_default",'
          'status="200",version="1"}')
    bad = ok.replace('status="200"', 'status="400"')
    assert ok in text and bad in text
    assert "modelhub_request_latency_seconds_bucket" in text
    assert 'modelhub_model_state{model="multi_io",state="AVAILABLE",version="1"} 1.0' in text
    assert 'modelhub_model_load_seconds{model="multi_io",version="1"}' in text


def test_classify_and_regress_on_tf_example_signatures(serving_server):
    classify = post(serving_server, "/v1/models/half_plus_two:classify", {
        "signature_name": "classify_x_to_y", "examples": [{"x": 1.0}, {"x": 4.0}]})
    assert classify.json() == {"results": [[["", 2.5]], [["", 4.0]]]}
    regress = post(serving_server, "/v1/models/half_plus_two/labels/stable:regress", {
        "signature_name": "regress_x_to_y", "context": {"x": 2.0}, "examples": [{}, {"x": 6.0}]})
    assert regress.json() == {"results": [3.0, 5.0]}
    wrong = post(serving_server, "/v1/models/half_plus_two:classify", {"examples": [{"x": 1.0}]})
    assert wrong.status_code == 400
    assert "Expected classify signature method_name" in wrong.json()["error"]
    bad = post(serving_server, "/v1/models/half_plus_two:regress",
               {"signature_name": "regress_x_to_y", "examples": [{"x": "text"}]})
    assert bad.status_code == 400 and "error" in bad.json()
