"""The web stack alone: a Flask app that takes the same prediction requests as modelhub, parses
them the same way, and answers with a body of the same size, without any model. Run under
gunicorn with modelhub's settings by `benchmarks/serving.py`, it is the cost of HTTP + Flask +
JSON that no model server built on this stack can go under.

JSON bodies are parsed with modelhub's own body parser (`serving.json_body.loads`, which reads
large numeric tensors straight into numpy) where this checkout has one, else with orjson; either
way the tensor then becomes a float32 numpy array, as it does in modelhub. `GET /parser` says which.

    BARE_FLASK_OUTPUTS='{"dense": 10, "image": 1000}' \\
        .venv/bin/python benchmarks/bare_flask.py --port 8500 [--workers N] [--threads N]

It runs under gunicorn with exactly the options `modelhub serve` gives it for the same workers
and threads (`modelhub.server.gunicorn_options`), so the two differ only in what they run.

BARE_FLASK_OUTPUTS says how many values per row each model name answers with (default 10).

    POST /v1/models/NAME:predict   {"instances": [...]} or {"inputs": ...}: parsed with orjson and
                                   made a float32 array; answers {"predictions": rows of zeros}
    POST /v2/models/NAME/infer     JSON tensors or the binary tensor extension (header of
                                   Inference-Header-Content-Length bytes, then raw tensors); the
                                   answer mirrors what was asked (binary or JSON outputs)
    GET  /healthz
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import orjson
from flask import Flask, Response, request

if __package__ in (None, ""):  # run as a file: the repository root holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HEADER_LENGTH = "Inference-Header-Content-Length"

try:
    from serving.json_body import loads as parse_json
    PARSER = "serving.json_body.loads"
except ImportError:  # a checkout from before the fast path: what modelhub did then
    parse_json = orjson.loads
    PARSER = "orjson.loads"


def _json(body) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                    mimetype="application/json")


def create_app() -> Flask:
    sizes = orjson.loads(os.environ.get("BARE_FLASK_OUTPUTS") or "{}")
    app = Flask("bare")

    def outputs(name: str) -> int:
        return int(sizes.get(name, 10))

    @app.get("/healthz")
    def healthz():
        return _json({"status": "ok"})

    @app.get("/parser")
    def parser():
        return _json({"parser": PARSER})

    @app.post("/v1/models/<path:target>")
    def predict(target: str):
        body = parse_json(request.get_data())
        values = body["instances"] if "instances" in body else body["inputs"]
        rows = np.asarray(values, dtype=np.float32)
        name = target.split(":")[0].split("/")[0]
        return _json({"predictions": np.zeros((rows.shape[0], outputs(name)), dtype=np.float32)})

    @app.post("/v2/models/<name>/infer")
    def infer(name: str):
        raw = request.get_data()
        length = request.headers.get(HEADER_LENGTH)
        header = parse_json(raw[:int(length)] if length else raw)
        tensor = header["inputs"][0]
        if length:
            array = np.frombuffer(memoryview(raw)[int(length):], dtype="<f4")
        else:
            array = np.asarray(tensor["data"], dtype=np.float32)
        rows = tensor["shape"][0] if tensor["shape"] else 1
        if array.size != int(np.prod(tensor["shape"])):
            return Response(b'{"error": "size"}', status=400, mimetype="application/json")
        result = np.zeros((rows, outputs(name)), dtype=np.float32)
        wanted = header.get("outputs") or [{"name": "output_0"}]
        binary = bool((wanted[0].get("parameters") or {}).get("binary_data"))
        entry = {"name": wanted[0]["name"], "datatype": "FP32", "shape": list(result.shape)}
        if not binary:
            entry["data"] = result.reshape(-1)
            return _json({"model_name": name, "model_version": "1", "outputs": [entry]})
        data = result.astype("<f4").tobytes()
        entry["parameters"] = {"binary_data_size": len(data)}
        head = orjson.dumps({"model_name": name, "model_version": "1", "outputs": [entry]})
        return Response(head + data, mimetype="application/octet-stream",
                        headers={HEADER_LENGTH: str(len(head))})

    return app


def main() -> None:
    from gunicorn.app.base import BaseApplication

    from modelhub.server import gunicorn_options
    from schemas.settings import load_settings

    parser = argparse.ArgumentParser(description="the web stack alone, under modelhub's gunicorn")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    settings = load_settings({"host": "127.0.0.1", "port": args.port, "role": "serving",
                              "workers": args.workers, "threads": args.threads}, environ={})

    class BareFlask(BaseApplication):
        def load_config(self):
            for key, value in gunicorn_options(settings).items():
                self.cfg.set(key, value)

        def load(self):
            return create_app()

    BareFlask().run()


if __name__ == "__main__":
    main()
