"""gRPC against a real `modelhub serve`, with the clients TF Serving's and Triton's users run,
unchanged: `tensorflow_serving.apis` stubs and `tritonclient.grpc`. The same numbers as REST and
in-process TensorFlow, the same metadata and status, TF Serving's status codes, health and
reflection."""
from __future__ import annotations

import numpy as np
import pytest
import requests

from tests.support.models import COUNT, IMAGES, TEXT, VALUES, in_process

grpc = pytest.importorskip("grpc")


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


@pytest.fixture(scope="module")
def channel(serving_server):
    with grpc.insecure_channel(serving_server.grpc_target) as opened:
        yield opened


@pytest.fixture(scope="module")
def prediction(channel):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def triton(serving_server):
    import tritonclient.grpc as triton_grpc

    client = triton_grpc.InferenceServerClient(serving_server.grpc_target)
    yield client
    client.close()


def predict_request(tf, name: str, signature: str = "", version: int | None = None,
                    label: str = "", **inputs):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:  # version and version_label are one field (a oneof)
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def post(server, path: str, body) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=body, timeout=30)


# --- the same numbers everywhere ----------------------------------------------------------------

def test_tf_serving_predict_equals_rest_and_in_process(serving_server, examples, prediction, tf):
    x = np.array([1.0, 2.0, 5.0], np.float32)
    expected = in_process(examples, "half_plus_two", x=x)["y"]
    for spec in ({}, {"version": 1}, {"label": "stable"}):
        response = prediction.Predict(predict_request(tf, "half_plus_two", **spec, x=x),
                                      timeout=30)
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), expected)
        assert (response.model_spec.name, response.model_spec.version.value,
                response.model_spec.signature_name) == ("half_plus_two", 1, "serving_default")
    rest = post(serving_server, "/v1/models/half_plus_two:predict", {"instances": x.tolist()})
    assert rest.json()["predictions"] == expected.tolist()

    image = prediction.Predict(predict_request(tf, "image_classifier", image=IMAGES), timeout=30)
    np.testing.assert_array_equal(tf.make_ndarray(image.outputs["output_0"]),
                                  in_process(examples, "image_classifier", image=IMAGES)["output_0"])


def test_strings_and_several_outputs_and_an_output_filter(examples, prediction, tf):
    expected = in_process(examples, "multi_io", text=TEXT, values=VALUES, count=COUNT)
    response = prediction.Predict(
        predict_request(tf, "multi_io", text=TEXT, values=VALUES, count=COUNT), timeout=30)
    assert set(response.outputs) == set(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs[name]), array)
    filtered = predict_request(tf, "multi_io", text=TEXT, values=VALUES, count=COUNT)
    filtered.output_filter.append("total")
    response = prediction.Predict(filtered, timeout=30)
    assert list(response.outputs) == ["total"]


def test_typed_value_fields_are_read_as_well_as_tensor_content(prediction, tf):
    request = predict_request(tf, "half_plus_two")
    request.inputs["x"].dtype = tf.float32.as_datatype_enum
    request.inputs["x"].tensor_shape.dim.add(size=3)
    request.inputs["x"].float_val.extend([1.0, 2.0, 5.0])
    response = prediction.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [2.5, 3.0, 4.5]


def test_one_value_fills_a_shape_but_not_gigabytes(prediction, tf):
    """TensorFlow fills a shape from one value; a request of a few bytes asking for 2 GB of
    floats is refused before anything is allocated, and the server goes on answering."""
    filled = predict_request(tf, "half_plus_two")
    filled.inputs["x"].dtype = tf.float32.as_datatype_enum
    filled.inputs["x"].tensor_shape.dim.add(size=4)
    filled.inputs["x"].float_val.append(2.0)
    response = prediction.Predict(filled, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [3.0] * 4
    filled.inputs["x"].tensor_shape.dim[0].size = 500_000_000
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(filled, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "send the values" in raised.value.details()


def test_classify_and_regress_over_grpc_equal_rest(serving_server, channel):
    from tensorflow.core.example import example_pb2, feature_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        prediction_service_pb2_grpc,
        regression_pb2,
    )

    def example(**features):
        return example_pb2.Example(features=feature_pb2.Features(feature={
            k: feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[v]))
            for k, v in features.items()}))

    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = "half_plus_two", "classify_x_to_y"
    request.input.example_list.examples.extend([example(x=1.0), example(x=4.0)])
    result = stub.Classify(request, timeout=30).result
    scores = [[(c.label, round(c.score, 4)) for c in cls.classes] for cls in result.classifications]
    rest = post(serving_server, "/v1/models/half_plus_two:classify", {
        "signature_name": "classify_x_to_y", "examples": [{"x": 1.0}, {"x": 4.0}]}).json()
    assert scores == [[(label, round(score, 4)) for label, score in row]
                      for row in rest["results"]] == [[("", 2.5)], [("", 4.0)]]

    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = "half_plus_two", "regress_x_to_y"
    listed = request.input.example_list_with_context
    listed.context.CopyFrom(example(x=2.0))
    listed.examples.extend([example(), example(x=6.0)])
    values = [r.value for r in stub.Regress(request, timeout=30).result.regressions]
    assert values == [3.0, 5.0]


def test_v2_grpc_infer_with_tritonclient_equals_rest_and_in_process(serving_server, examples,
                                                                     triton):
    import tritonclient.grpc as triton_grpc

    expected = in_process(examples, "multi_io", text=TEXT, values=VALUES, count=COUNT)
    inputs = []
    for name, array, datatype in (("text", TEXT, "BYTES"), ("values", VALUES, "FP32"),
                                  ("count", COUNT, "INT64")):
        tensor = triton_grpc.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = triton.infer("multi_io", inputs, model_version="1")
    for name, array in expected.items():
        np.testing.assert_array_equal(result.as_numpy(name), array)
    assert result.get_response().model_version == "1"

    image = triton_grpc.InferInput("image", list(IMAGES.shape), "FP32")
    image.set_data_from_numpy(IMAGES)
    outputs = [triton_grpc.InferRequestedOutput("output_0")]
    answer = triton.infer("image_classifier", [image], outputs=outputs).as_numpy("output_0")
    np.testing.assert_array_equal(answer, in_process(examples, "image_classifier",
                                                     image=IMAGES)["output_0"])
    rest = post(serving_server, "/v2/models/image_classifier/infer", {"inputs": [
        {"name": "image", "shape": list(IMAGES.shape), "datatype": "FP32",
         "data": IMAGES.reshape(-1).tolist()}]}).json()
    np.testing.assert_array_equal(np.array(rest["outputs"][0]["data"], np.float32),
                                  answer.reshape(-1))


# --- metadata and status match REST -------------------------------------------------------------

def test_model_metadata_and_status_match_rest(serving_server, channel, prediction):
    from google.protobuf import json_format
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
    )

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "multi_io"
    response = prediction.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    as_json = json_format.MessageToDict(signatures, preserving_proto_field_name=True)
    rest = requests.get(f"{serving_server.url}/v1/models/multi_io/metadata", timeout=30).json()
    rest_signatures = rest["metadata"]["signature_def"]["signature_def"]
    assert set(as_json["signature_def"]) == set(rest_signatures)
    for name, signature in rest_signatures.items():
        grpc_signature = as_json["signature_def"][name]
        assert grpc_signature["method_name"] == signature["method_name"]
        for side in ("inputs", "outputs"):
            for key, info in signature[side].items():
                mine = grpc_signature[side][key]
                assert (mine["name"], mine["dtype"]) == (info["name"], info["dtype"])
                assert [d["size"] for d in mine["tensor_shape"].get("dim", [])] == \
                    [d["size"] for d in info["tensor_shape"]["dim"]]

    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "multi_io"}), timeout=30)
    as_json = json_format.MessageToDict(status, preserving_proto_field_name=True)
    rest = requests.get(f"{serving_server.url}/v1/models/multi_io", timeout=30).json()
    assert [(s["version"], s["state"]) for s in as_json["model_version_status"]] == \
        [(s["version"], s["state"]) for s in rest["model_version_status"]]


def test_v2_metadata_and_health_match_rest(serving_server, triton):
    metadata = triton.get_model_metadata("multi_io", as_json=True)
    rest = requests.get(f"{serving_server.url}/v2/models/multi_io", timeout=30).json()
    for key in ("name", "versions", "platform", "inputs", "outputs"):
        grpc_value = metadata[key]
        if key in ("inputs", "outputs"):  # the JSON of a proto writes int64 shapes as strings
            grpc_value = [{**t, "shape": [int(d) for d in t["shape"]]} for t in grpc_value]
        assert grpc_value == rest[key], key
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("multi_io") and not triton.is_model_ready("multi_io", "7")
    server = triton.get_server_metadata(as_json=True)
    assert server["name"] == "modelhub" and "binary_tensor_data" in server["extensions"]


def test_health_service_and_reflection(channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService", "inference.GRPCInferenceService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=10)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


# --- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, code, message", [
    (dict(name="missing"), "NOT_FOUND", "Servable not found"),
    (dict(version=9), "NOT_FOUND", "Specific(half_plus_two, 9)"),
    (dict(label="nope"), "NOT_FOUND", "Unrecognized servable version label"),
    (dict(signature="nope"), "INVALID_ARGUMENT", "not found in signature def"),
    (dict(x=np.array([1, 2], np.int32)), "INVALID_ARGUMENT", "dtype int32"),
    (dict(x=np.ones((2, 2), np.float32)), "INVALID_ARGUMENT", "shape [2, 2]"),
    (dict(y=np.ones(2, np.float32)), "INVALID_ARGUMENT", "unknown input"),
])
def test_tf_serving_errors_carry_its_status_codes(prediction, tf, change, code, message):
    spec = {"name": "half_plus_two", "x": np.array([1.0], np.float32), **change}
    if "y" in spec:
        spec.pop("x")
    request = predict_request(tf, spec.pop("name"), **spec)
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(request, timeout=30)
    assert raised.value.code() == getattr(grpc.StatusCode, code)
    assert message in raised.value.details()


def test_v2_errors_carry_status_codes(triton):
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    tensor = triton_grpc.InferInput("x", [2], "FP32")
    tensor.set_data_from_numpy(np.ones(2, np.float32))
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("missing", [tensor])
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    wrong = triton_grpc.InferInput("x", [2], "INT32")
    wrong.set_data_from_numpy(np.ones(2, np.int32))
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("half_plus_two", [wrong])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("half_plus_two", [tensor],
                     outputs=[triton_grpc.InferRequestedOutput("nope")])
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unknown output" in raised.value.message()


def test_a_message_over_the_size_limit_is_refused(prediction, tf):
    big = np.zeros(3 * 1024 * 1024, np.float32)  # 12 MB, over the test server's 8 MiB
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(predict_request(tf, "half_plus_two", x=big), timeout=30)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
