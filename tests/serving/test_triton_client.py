"""The real `tritonclient.http` client, unchanged, against modelhub's Open Inference Protocol."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support.models import COUNT, IMAGES, TEXT, VALUES, in_process


@pytest.fixture
def client(serving_server):
    return triton.InferenceServerClient(serving_server.url.removeprefix("http://"))


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("multi_io")
    assert client.is_model_ready("multi_io", "1")
    assert not client.is_model_ready("missing")
    assert client.get_server_metadata()["name"] == "modelhub"
    metadata = client.get_model_metadata("multi_io")
    assert metadata["versions"] == ["1"]
    assert {i["name"]: (i["datatype"], i["shape"]) for i in metadata["inputs"]} == {
        "text": ("BYTES", [-1]), "values": ("FP32", [-1, 3]), "count": ("INT64", [-1])}


@pytest.mark.parametrize("binary", [False, True])
def test_infer_json_and_binary(client, examples, binary):
    # JSON carries BYTES as text, so only the binary encoding can send non-UTF-8 bytes.
    text = TEXT if binary else np.array([b"hello", b"abc"], dtype=object)
    expected = in_process(examples, "multi_io", text=text, values=VALUES, count=COUNT)
    inputs = [triton.InferInput("text", [2], "BYTES"), triton.InferInput("values", [2, 3], "FP32"),
              triton.InferInput("count", [2], "INT64")]
    for tensor, data in zip(inputs, (text, VALUES, COUNT)):
        tensor.set_data_from_numpy(data, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary)
               for name in ("upper", "weighted", "total", "length")]
    result = client.infer("multi_io", inputs, outputs=outputs, model_version="1")
    np.testing.assert_array_equal(result.as_numpy("weighted"), expected["weighted"])
    np.testing.assert_array_equal(result.as_numpy("total"), expected["total"])
    np.testing.assert_array_equal(result.as_numpy("length"), expected["length"])
    upper = [v if isinstance(v, bytes) else v.encode() for v in result.as_numpy("upper").tolist()]
    assert upper == list(expected["upper"])


def test_binary_images(client, examples):
    expected = in_process(examples, "image_classifier", image=IMAGES)["output_0"]
    image = triton.InferInput("image", list(IMAGES.shape), "FP32")
    image.set_data_from_numpy(IMAGES, binary_data=True)
    result = client.infer("image_classifier", [image],
                          outputs=[triton.InferRequestedOutput("output_0", binary_data=True)])
    np.testing.assert_array_equal(result.as_numpy("output_0"), expected)


def test_errors_surface_as_client_exceptions(client):
    x = triton.InferInput("x", [2], "INT32")
    x.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
    with pytest.raises(InferenceServerException, match="dtype int32"):
        client.infer("half_plus_two", [x])
    with pytest.raises(InferenceServerException, match="Servable not found"):
        client.get_model_metadata("missing")
