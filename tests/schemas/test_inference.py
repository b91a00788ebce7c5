"""The V2 request schema's memory of valid structures: a body is answered from it only when the
schema would have said the same, with that body's own data and id."""
from __future__ import annotations

import numpy as np
import pytest

from schemas import inference
from schemas.errors import InvalidArgument
from schemas.inference import load_inference_request


@pytest.fixture(autouse=True)
def empty_memory():
    inference._VALID_STRUCTURES.clear()
    yield
    inference._VALID_STRUCTURES.clear()


def body(data=None, **extra) -> dict:
    tensor = {"name": "x", "shape": [1, 3], "datatype": "FP32"}
    if data is not None:
        tensor["data"] = data
    return {"inputs": [tensor], **extra}


def test_each_body_keeps_its_own_data_and_id():
    first = load_inference_request(body([1, 2, 3], id="a"))
    second = load_inference_request(body(np.arange(3.0), id="b"))
    third = load_inference_request(body([7, 8, 9]))
    assert first["id"] == "a" and first["inputs"][0]["data"] == [1, 2, 3]
    assert second["id"] == "b" and list(second["inputs"][0]["data"]) == [0.0, 1.0, 2.0]
    assert "id" not in third and third["inputs"][0]["data"] == [7, 8, 9]
    assert third["parameters"] == {} and third["inputs"][0]["parameters"] == {}
    assert len(inference._VALID_STRUCTURES) == 1  # one structure, whatever the values


def test_the_memory_holds_no_data():
    load_inference_request(body(np.zeros(3, np.float32)))
    (known,) = inference._VALID_STRUCTURES.values()
    assert "data" not in known["inputs"][0] and "id" not in known


def test_a_body_without_data_is_not_taken_for_one_with_it():
    load_inference_request(body([1, 2, 3]))
    loaded = load_inference_request(body())
    assert "data" not in loaded["inputs"][0]


@pytest.mark.parametrize("bad, message", [
    (body([1, 2, 3], id=5), "id: Not a valid string"),
    ({"inputs": [{"name": "x", "shape": [1.0, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
     "inputs.0.shape.0: Not a valid integer"),
    ({"inputs": [{"name": "x", "shape": [True, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
     "inputs.0.shape.0: Not a valid integer"),
    (body([1, 2, 3], parameters={"binary_data_output": 1}), "binary_data_output"),
])
def test_a_valid_structure_remembered_never_vouches_for_a_different_one(bad, message):
    load_inference_request(body([1, 2, 3], id="fine"))
    for _ in range(2):  # refused, and not remembered as valid
        with pytest.raises(InvalidArgument, match=message):
            load_inference_request(bad)


def test_the_memory_stays_bounded(monkeypatch):
    monkeypatch.setattr(inference, "_MAX_STRUCTURES", 8)
    for rows in range(1, 30):
        tensor = {"name": "x", "shape": [rows, 3], "datatype": "FP32", "data": [0] * 3 * rows}
        load_inference_request({"inputs": [tensor]})
    assert len(inference._VALID_STRUCTURES) <= 8
