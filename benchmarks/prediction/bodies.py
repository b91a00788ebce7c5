"""The requests the serving benchmark sends, and checking the answers before anything is timed:
every server must give TensorFlow's in-process prediction (bare Flask: an answer of the right
size) before its numbers count."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import requests

from tests.support.loadgen import TIMEOUT_S, Request
from tests.support.processes import Server

#: A server still loading a model answers 503; it is asked again for up to this long.
LOAD_WAIT_S = 240.0


@dataclass
class Body:
    """One kind of request of the benchmark: a model, a format, and the request itself."""

    model: str
    fmt: str
    request: Request


def write_bodies(models_dir: Path, bodies: Path, metas: dict[str, dict]) -> dict[str, dict[str, Body]]:
    """Request bodies for every model and format: TF Serving JSON, V2 binary, MLflow JSON."""
    bodies.mkdir(parents=True, exist_ok=True)
    found = {}
    for model, meta in metas.items():
        row = np.load(models_dir / model / "input.npy")
        instances = orjson.dumps({"instances": row}, option=orjson.OPT_SERIALIZE_NUMPY)
        (bodies / f"{model}.json").write_bytes(instances)
        data = row.astype("<f4").tobytes()
        header = orjson.dumps({
            "inputs": [{"name": meta["input"]["name"], "shape": list(row.shape),
                        "datatype": "FP32", "parameters": {"binary_data_size": len(data)}}],
            "outputs": [{"name": meta["output"]["name"], "parameters": {"binary_data": True}}]})
        (bodies / f"{model}.bin").write_bytes(header + data)
        found[model] = {
            "json": Body(model, "json", Request(f"/v1/models/{model}:predict",
                                                bodies / f"{model}.json", "application/json")),
            "binary": Body(model, "binary", Request(
                f"/v2/models/{model}/infer", bodies / f"{model}.bin", "application/octet-stream",
                {"Inference-Header-Content-Length": str(len(header))})),
            "mlflow": Body(model, "json", Request("/invocations", bodies / f"{model}.json",
                                                  "application/json")),
        }
    return found


def answer_array(response: requests.Response, body: Body) -> np.ndarray:
    """The prediction in an answer, as float32 [rows, outputs]."""
    if body.fmt == "binary":
        length = int(response.headers["Inference-Header-Content-Length"])
        header = orjson.loads(response.content[:length])
        (out,) = header["outputs"]
        return np.frombuffer(response.content[length:], dtype="<f4").reshape(out["shape"])
    answer = orjson.loads(response.content)
    if "predictions" in answer:
        values = answer["predictions"]
    elif "outputs" in answer:
        values = answer["outputs"]
    else:
        raise ValueError(f"no predictions in {str(answer)[:200]}")
    if isinstance(values, dict):  # MLflow with named outputs
        (values,) = values.values()
    return np.asarray(values, dtype=np.float32)


def check_answer(srv: Server, body: Body, reference: np.ndarray, compare: bool,
                 times: int = 1) -> None:
    """`times` requests, each on a new connection (so that with several workers each is likely
    to be asked): 200 and (unless `compare` is false: bare Flask) TensorFlow's prediction.
    A 503 (a worker still loading the model) is asked again, for up to LOAD_WAIT_S."""
    deadline = time.monotonic() + LOAD_WAIT_S
    req = body.request
    data = req.body.read_bytes()
    for _ in range(times):
        while True:
            response = requests.post(srv.url + req.path, data=data, timeout=TIMEOUT_S,
                                     headers={"Content-Type": req.content_type, **req.headers})
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        _check_response(srv, body, reference, compare, response)


def _check_response(srv: Server, body: Body, reference: np.ndarray, compare: bool,
                    response: requests.Response) -> None:
    where = f"{srv.label}, {body.model} {body.fmt}"
    if response.status_code != 200:
        raise RuntimeError(f"{where}: HTTP {response.status_code}: {response.text[:500]}")
    got = answer_array(response, body)
    if got.shape != reference.shape:
        raise RuntimeError(f"{where}: answer of shape {got.shape}, expected {reference.shape}")
    if compare and not np.allclose(got, reference, rtol=1e-3, atol=1e-5):
        worst = np.abs(got - reference).max()
        raise RuntimeError(f"{where}: the prediction differs from TensorFlow's in-process one by "
                           f"up to {worst:g}")
