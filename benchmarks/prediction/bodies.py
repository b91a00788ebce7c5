"""The requests the serving benchmark sends, and checking the answers before anything is timed:
every server must give TensorFlow's in-process prediction before its numbers count.

Formats (every request carries one row):

- `json`    TF Serving's REST API: `POST /v1/models/NAME:predict`, `{"instances": [row]}`
            (MLflow gets the same body at `/invocations`; BentoML `{"x": [row]}` at `/predict`);
- `v2json`  the Open Inference Protocol, JSON tensors: `POST /v2/models/NAME/infer`
            (modelhub and MLServer alike);
- `binary`  the same with Triton's binary tensor extension: a JSON header, then raw float32;
- `grpc`    TF Serving's gRPC `PredictionService/Predict`, the row in `tensor_content`, as a
            length-prefixed message that h2load sends on HTTP/2.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import requests

from tests.support.loadgen import TIMEOUT_S, Request
from tests.support.processes import Server

#: A server still loading a model answers 503 (gRPC: UNAVAILABLE); it is asked again for up to
#: this long.
LOAD_WAIT_S = 240.0
GRPC_PREDICT = "/tensorflow.serving.PredictionService/Predict"


@dataclass
class Body:
    """One kind of request of the benchmark: a model, a format, and the request itself."""

    model: str
    fmt: str
    request: Request
    #: the load generator this format needs (None: the run's, wrk or hey)
    generator: str | None = None


def _v2_tensor(meta: dict, row: np.ndarray) -> dict:
    return {"name": meta["input"]["name"], "shape": list(row.shape), "datatype": "FP32"}


def predict_request(model: str, meta: dict, row: np.ndarray):
    """TF Serving's PredictRequest for one row (tensor_content, as tf.make_tensor_proto)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[meta["input"]["name"]].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_content=row.astype("<f4").tobytes(),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in row.shape])))
    return request


def write_bodies(models_dir: Path, bodies: Path, metas: dict[str, dict]) -> dict[str, dict[str, Body]]:
    """Request bodies for every model and format."""
    bodies.mkdir(parents=True, exist_ok=True)
    found = {}
    for model, meta in metas.items():
        row = np.load(models_dir / model / "input.npy")

        def body(name: str, data: bytes) -> Path:
            path = bodies / f"{model}.{name}"
            path.write_bytes(data)
            return path

        numpy = orjson.OPT_SERIALIZE_NUMPY
        instances = body("json", orjson.dumps({"instances": row}, option=numpy))
        v2json = body("v2.json", orjson.dumps({"inputs": [
            {**_v2_tensor(meta, row), "data": row.reshape(-1)}]}, option=numpy))
        data = row.astype("<f4").tobytes()
        header = orjson.dumps({
            "inputs": [{**_v2_tensor(meta, row), "parameters": {"binary_data_size": len(data)}}],
            "outputs": [{"name": meta["output"]["name"], "parameters": {"binary_data": True}}]})
        binary = body("bin", header + data)
        message = predict_request(model, meta, row).SerializeToString()
        grpc = body("grpc", struct.pack(">?I", False, len(message)) + message)
        bento = body("bento.json", orjson.dumps({"x": row}, option=numpy))
        found[model] = {
            "json": Body(model, "json", Request(f"/v1/models/{model}:predict", instances,
                                                "application/json")),
            "v2json": Body(model, "v2json", Request(f"/v2/models/{model}/infer", v2json,
                                                    "application/json")),
            "binary": Body(model, "binary", Request(
                f"/v2/models/{model}/infer", binary, "application/octet-stream",
                {"Inference-Header-Content-Length": str(len(header))})),
            "grpc": Body(model, "grpc", Request(GRPC_PREDICT, grpc, "application/grpc"),
                         generator="h2load"),
            "mlflow": Body(model, "json", Request("/invocations", instances, "application/json")),
            "bentoml": Body(model, "json", Request("/predict", bento, "application/json")),
        }
    return found


def answer_array(response: requests.Response, body: Body) -> np.ndarray:
    """The prediction in an answer, as float32 [rows, outputs]."""
    length = response.headers.get("Inference-Header-Content-Length")
    if length is not None:
        header = orjson.loads(response.content[:int(length)])
        (out,) = header["outputs"]
        return np.frombuffer(response.content[int(length):], dtype="<f4").reshape(out["shape"])
    answer = orjson.loads(response.content)
    if isinstance(answer, list):  # BentoML: the array itself
        return np.asarray(answer, dtype=np.float32)
    if "predictions" in answer:
        values = answer["predictions"]
    elif "outputs" in answer:
        values = answer["outputs"]
        if isinstance(values, list) and values and isinstance(values[0], dict):  # V2
            (out,) = values
            return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    else:
        raise ValueError(f"no predictions in {str(answer)[:200]}")
    if isinstance(values, dict):  # MLflow with named outputs
        (values,) = values.values()
    return np.asarray(values, dtype=np.float32)


def _grpc_answer(srv: Server, body: Body, meta: dict, row: np.ndarray) -> np.ndarray:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    deadline = time.monotonic() + LOAD_WAIT_S
    target = srv.grpc_target
    while True:
        with grpc.insecure_channel(target) as channel:  # a new connection: maybe another worker
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            try:
                response = stub.Predict(predict_request(body.model, meta, row), timeout=TIMEOUT_S)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise RuntimeError(f"{srv.label}, {body.model} grpc: {e.code()}: "
                                       f"{e.details()}") from None
                time.sleep(0.5)
    tensor = response.outputs[meta["output"]["name"]]
    return np.frombuffer(tensor.tensor_content, "<f4").reshape([d.size for d in
                                                                tensor.tensor_shape.dim])


def check_answer(srv: Server, body: Body, reference: np.ndarray, meta: dict, row: np.ndarray,
                 times: int = 1) -> None:
    """`times` requests, each on a new connection (so that with several workers each is likely
    to be asked): an answer, and TensorFlow's prediction. A 503 (a worker still loading the
    model) is asked again, for up to LOAD_WAIT_S."""
    where = f"{srv.label}, {body.model} {body.fmt}"
    req = body.request
    data = req.body.read_bytes()
    for _ in range(times):
        if body.fmt == "grpc":
            got = _grpc_answer(srv, body, meta, row)
        else:
            deadline = time.monotonic() + LOAD_WAIT_S
            while True:
                response = requests.post(srv.url + req.path, data=data, timeout=TIMEOUT_S,
                                         headers={"Content-Type": req.content_type,
                                                  **req.headers})
                if response.status_code != 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if response.status_code != 200:
                raise RuntimeError(f"{where}: HTTP {response.status_code}: {response.text[:500]}")
            got = answer_array(response, body)
        if got.shape != reference.shape:
            raise RuntimeError(f"{where}: answer of shape {got.shape}, expected {reference.shape}")
        if not np.allclose(got, reference, rtol=1e-3, atol=1e-5):
            worst = np.abs(got - reference).max()
            raise RuntimeError(f"{where}: the prediction differs from TensorFlow's in-process one "
                               f"by up to {worst:g}")
