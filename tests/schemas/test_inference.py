"""The V2 request schema's memory of valid structures: a body is answered from it only when the
schema would have said the same, with that body's own data and id."""
from __future__ import annotations

import copy

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas import inference
from schemas.errors import InvalidArgument
from schemas.inference import InferenceRequestSchema, load_inference_request


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
    load_inference_request(body(np.zeros(3, np.float32).tolist(), id="x"))
    (known,) = inference._VALID_STRUCTURES.values()
    assert b'"data"' not in known and b'"id"' not in known


def test_a_body_without_data_is_not_taken_for_one_with_it():
    load_inference_request(body([1, 2, 3]))
    loaded = load_inference_request(body())
    assert "data" not in loaded["inputs"][0]


@pytest.mark.parametrize("extra", [{}, {"parameters": {"binary_data_size": 4}}])
def test_null_data_is_refused_after_a_body_with_data(extra):
    """Same names, shapes and parameters: only the schema's `data` may not be null tells them
    apart."""
    valid = body([1, 2, 3])
    valid["inputs"][0].update(extra)
    load_inference_request(valid)
    null = body()
    null["inputs"][0].update(extra, data=None)
    with pytest.raises(InvalidArgument, match="inputs.0.data: Field may not be null"):
        load_inference_request(null)


def test_each_request_gets_objects_of_its_own():
    first = load_inference_request(body([1, 2, 3], parameters={"signature_name": "a"}))
    first["parameters"]["binary_data_output"] = True
    first["inputs"][0]["shape"].append(99)
    for _ in range(2):
        again = load_inference_request(body([4, 5, 6], parameters={"signature_name": "a"}))
        assert again["parameters"] == {"signature_name": "a"}
        assert again["inputs"][0]["shape"] == [1, 3]
        again["inputs"][0]["parameters"]["binary_data_size"] = 12


def test_large_structures_are_not_remembered():
    """Unknown keys and parameters pass the schema and would be kept with the structure: a
    large one is checked every time instead."""
    tensor = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3],
              "contents": {"fp32_contents": [0.5] * 5000}}
    load_inference_request({"inputs": [tensor]})
    assert not inference._VALID_STRUCTURES


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
    assert sum(len(k) + len(v) for k, v in inference._VALID_STRUCTURES.items()) <= \
        8 * 2 * inference._MAX_STRUCTURE_BYTES


# --- differential: whatever the memory holds, the answer is the schema's ----------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from([1.0, 2.5]),
                     st.sampled_from(["", "x", "FP32", "1"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=2)
                       | st.dictionaries(st.sampled_from(["a", "data", "binary_data"]), inner,
                                         max_size=2), max_leaves=4)
_parameters = st.fixed_dictionaries({}, optional={
    "binary_data_size": st.integers(0, 9), "binary_data_output": st.booleans(),
    "signature_name": st.sampled_from(["s", "t"]), "other": _values})
_tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["x", "y"]), "shape": st.lists(st.integers(0, 3), max_size=2),
     "datatype": st.sampled_from(["FP32", "INT64", "BYTES"])},
    optional={"parameters": _parameters, "data": _values, "extra": _values})
_valid_bodies = st.fixed_dictionaries({"inputs": st.lists(_tensor, min_size=1, max_size=2)}, optional={
    "id": st.sampled_from(["a", "b"]), "parameters": _parameters,
    "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["x", "y"])},
                                              optional={"parameters": _parameters}), max_size=2)})


@st.composite
def _sibling(draw, body: dict) -> dict:
    """A copy of `body` with other data and id, and perhaps one part replaced or removed."""
    body = copy.deepcopy(body)
    for tensor in body["inputs"]:
        choice = draw(st.sampled_from(["keep", "replace", "remove"]))
        if choice == "replace":
            tensor["data"] = draw(st.none() | _values)
        elif choice == "remove":
            tensor.pop("data", None)
    if draw(st.booleans()):
        body["id"] = draw(_values)
    if draw(st.booleans()):
        parent = draw(st.sampled_from([body, *body["inputs"], body.get("parameters", {})]))
        if parent:
            key = draw(st.sampled_from(sorted(parent)))
            if draw(st.booleans()):
                del parent[key]
            else:
                parent[key] = draw(_values)
    return orjson.loads(orjson.dumps(body))  # as the server receives it


def _answer(load, body: dict):
    try:
        return "ok", load(copy.deepcopy(body))
    except (ValidationError, InvalidArgument) as e:
        return "refused", str(e).removeprefix("invalid inference request: ")


def _schema_alone(body: dict) -> dict:
    try:
        return InferenceRequestSchema().load(body)
    except ValidationError as e:
        raise InvalidArgument(inference._flatten(e.messages)) from None


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_the_memory_never_changes_an_answer(data):
    inference._VALID_STRUCTURES.clear()
    primes = data.draw(st.lists(_valid_bodies, min_size=1, max_size=3))
    sibling = data.draw(_sibling(data.draw(st.sampled_from(primes))))
    for body in [*primes, sibling, sibling]:
        assert _answer(load_inference_request, body) == _answer(_schema_alone, body)
