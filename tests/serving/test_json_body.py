"""The JSON fast path for large numeric tensors gives exactly what orjson + numpy give, and
declines (falls back to orjson) whenever it could not be exact."""
from __future__ import annotations

import numpy as np
import orjson
import pytest
import requests

from serving import json_body

IMAGE = np.random.default_rng(5).random((2, 64, 64, 3), dtype=np.float32)


def slow(raw: bytes):
    return orjson.loads(raw)


def test_a_large_regular_tensor_is_parsed_exactly_like_orjson():
    raw = orjson.dumps({"signature_name": "serving_default", "instances": IMAGE.tolist()})
    assert len(raw) > json_body.MIN_BYTES
    fast = json_body.loads(raw)
    assert isinstance(fast["instances"], np.ndarray)
    expected = np.asarray(slow(raw)["instances"])
    assert fast["instances"].shape == expected.shape
    np.testing.assert_array_equal(fast["instances"], expected)
    assert fast["signature_name"] == "serving_default"


def test_pretty_printed_and_integer_tensors_take_the_fast_path():
    values = np.arange(30000).reshape(100, 300)
    raw = orjson.dumps({"inputs": values.tolist()}, option=orjson.OPT_INDENT_2)
    fast = json_body.loads(raw)["inputs"]
    assert isinstance(fast, np.ndarray)
    np.testing.assert_array_equal(fast, values)


@pytest.mark.parametrize("case", [
    "ragged rows with the same number of values",
    "a string among the numbers",
    "a bool among the numbers",
    "a bracket inside another member's string",
    "an integer beyond 2**53",
    "two tensor members",
    "a repeated key",
])
def test_the_fast_path_declines_whenever_it_could_not_be_exact(case):
    rows = np.random.default_rng(1).random((200, 60)).tolist()
    body: dict = {"instances": rows}
    if case.startswith("ragged"):
        rows[0].append(1.0)
        rows[1].pop()
    elif case.startswith("a string"):
        rows[7][3] = "7"
    elif case.startswith("a bool"):
        rows[7][3] = True
    elif case.startswith("a bracket"):
        body["signature_name"] = "odd]name"
    elif case.startswith("an integer"):
        rows[5][5] = 2**53 + 1
    elif case.startswith("two"):
        body["inputs"] = rows
    raw = orjson.dumps(body)
    if case.startswith("a repeated"):
        raw = raw[:-1] + b',"instances":5}'
        assert orjson.loads(raw)["instances"] == 5
    assert len(raw) > json_body.MIN_BYTES
    parsed = json_body.loads(raw)
    assert parsed == slow(raw)  # orjson's result: lists, not an array
    assert not isinstance(parsed.get("instances"), np.ndarray)


def test_malformed_large_bodies_raise_orjsons_error():
    raw = orjson.dumps({"instances": IMAGE.tolist()})[:-1]
    with pytest.raises(orjson.JSONDecodeError):
        json_body.loads(raw)
    too_deep = b'{"instances": ' + b"[" * 3000 + b"1" + b"]" * 3000 + b"}"
    too_deep += b" " * json_body.MIN_BYTES
    with pytest.raises(orjson.JSONDecodeError):
        json_body.loads(too_deep)


def test_a_large_image_over_http_equals_in_process(serving_server, examples):
    import tensorflow as tf

    images = np.random.default_rng(8).random((40, 32, 32, 3), dtype=np.float32)
    raw = orjson.dumps({"instances": images.tolist()})
    assert len(raw) > json_body.MIN_BYTES
    response = requests.post(f"{serving_server.url}/v1/models/image_classifier:predict",
                             data=raw, timeout=30)
    assert response.status_code == 200, response.text
    model = tf.saved_model.load(str(examples["image_classifier"])).signatures["serving_default"]
    expected = model(image=tf.constant(images))["output_0"].numpy()
    np.testing.assert_allclose(np.array(response.json()["predictions"], np.float32), expected,
                               rtol=1e-6, atol=1e-6)
    # ragged, same element count: refused with the same error as a small ragged body
    rows = images.tolist()
    rows[0][0].append([0.0, 0.0, 0.0])
    rows[0][1].pop()
    ragged = requests.post(f"{serving_server.url}/v1/models/image_classifier:predict",
                           data=orjson.dumps({"instances": rows}), timeout=30)
    assert ragged.status_code == 400 and "ragged" in ragged.json()["error"]


def v2_body(*tensors, **extra) -> bytes:
    return orjson.dumps({"id": "r1", "inputs": list(tensors), **extra},
                        option=orjson.OPT_SERIALIZE_NUMPY)


def test_v2_numeric_data_is_read_straight_into_arrays_and_the_rest_as_orjson_reads_it():
    values = np.random.default_rng(1).random(2000, dtype=np.float32)
    raw = v2_body({"name": "x", "shape": [2, 1000], "datatype": "FP32", "data": values},
                  {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["text"]},
                  outputs=[{"name": "y"}])
    fast, expected = json_body.loads_inference(raw), slow(raw)
    data = fast["inputs"][0].pop("data")
    assert isinstance(data, np.ndarray)
    np.testing.assert_array_equal(data, np.asarray(expected["inputs"][0].pop("data")))
    assert fast == expected  # everything else, strings included, exactly as orjson gives it


@pytest.mark.parametrize("data", [
    [True, False] * 600,                 # booleans are not numbers
    [1.5] * 1000 + ["x"],                # a string among the numbers
    [2**60] * 600,                       # integers a double cannot hold exactly
], ids=["bools", "a string", "large integers"])
def test_v2_data_that_is_not_plain_numbers_is_left_to_orjson(data):
    raw = v2_body({"name": "x", "shape": [len(data)], "datatype": "FP64", "data": data})
    assert len(raw) > json_body.MIN_BYTES
    assert json_body.loads_inference(raw) == slow(raw)
