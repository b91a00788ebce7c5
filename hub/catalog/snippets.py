"""Copy-paste snippets for a model, written for its own signature: the modelhub CLI and SDK,
tensorflow_hub, curl on TF Serving's REST API, tritonclient (KServe V2) and TF Serving's gRPC
stubs, each with inputs that fit."""
from __future__ import annotations

import json

from schemas.inference import V2_TO_TF

TF_TO_V2 = {tf: v2 for v2, tf in V2_TO_TF.items()}
#: A value of each dtype for the example inputs.
_SAMPLE = {"string": "text", "bool": False}


def example_shape(spec: dict) -> list[int]:
    return [1 if d is None or d < 0 else d for d in (spec["shape"] or [1])]


def example_value(spec: dict):
    """One example of an input, with -1 dimensions as 1."""
    dtype = spec["dtype"]
    value = _SAMPLE.get(dtype, 0.0 if dtype.startswith(("float", "bfloat")) else 0)
    for size in reversed(example_shape(spec)):
        value = [value] * size
    return value


def example_body(signature_name: str, signature: dict) -> dict:
    """A :predict body that fits the signature (columnar, so every input is named)."""
    body = {"inputs": {name: example_value(spec) for name, spec in signature["inputs"].items()}}
    if signature_name != "serving_default":
        body = {"signature_name": signature_name, **body}
    return body


def _numpy(spec: dict) -> str:
    shape = tuple(example_shape(spec))
    if spec["dtype"] == "string":
        return f'np.full({shape}, b"text", dtype=object)'
    return f'np.zeros({shape}, dtype=np.{spec["dtype"]})'


def snippets(base_url: str, name: str, version: int, signature_name: str | None,
             signature: dict | None) -> list[tuple[str, str]]:
    """(title, code) pairs."""
    host = base_url.split("://", 1)[-1]
    found = [
        ("modelhub CLI", f"modelhub --hub {base_url} pull {name}/{version} "
                         f"-o ./{name.replace('/', '-')}"),
        ("Python (modelhub)", f"import hub  # MODELHUB_URL={base_url}\n"
                              f'model = hub.load("{name}/{version}")'),
        ("tensorflow_hub", "import tensorflow_hub\n"
                           f'model = tensorflow_hub.load("{base_url}/models/{name}/{version}")'),
    ]
    if signature is None:
        return found
    compact = json.dumps(example_body(signature_name, signature), separators=(",", ":"))
    if len(compact) > 1500:
        compact = compact[:1500] + " ...'  # shortened: the full body fits the signature"
    found.append(("curl (TF Serving REST)",
                  f"curl -s -X POST {base_url}/v1/models/{name}/versions/{version}:predict \\\n"
                  f"     -H 'Content-Type: application/json' -d '{compact}'"))
    triton = ["import numpy as np", "import tritonclient.http as triton", "",
              f'client = triton.InferenceServerClient("{host}")', "inputs = []"]
    for input_name, spec in sorted(signature["inputs"].items()):
        triton += [f'x = triton.InferInput("{input_name}", {example_shape(spec)}, '
                   f'"{TF_TO_V2.get(spec["dtype"], "FP32")}")',
                   f"x.set_data_from_numpy({_numpy(spec)})", "inputs.append(x)"]
    params = "" if signature_name == "serving_default" else \
        f', parameters={{"signature_name": "{signature_name}"}}'
    triton.append(f'result = client.infer("{name}", inputs, model_version="{version}"{params})')
    found.append(("tritonclient (KServe V2)", "\n".join(triton)))
    grpc = ["import grpc, numpy as np, tensorflow as tf",
            "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc", "",
            f'channel = grpc.insecure_channel("{host.split(":")[0]}:8500")',
            "stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)",
            "request = predict_pb2.PredictRequest()",
            f'request.model_spec.name = "{name}"',
            f"request.model_spec.version.value = {version}",
            f'request.model_spec.signature_name = "{signature_name}"']
    for input_name, spec in sorted(signature["inputs"].items()):
        grpc.append(f'request.inputs["{input_name}"].CopyFrom(tf.make_tensor_proto('
                    f"{_numpy(spec)}))")
    grpc.append("response = stub.Predict(request, timeout=10)")
    found.append(("gRPC (TF Serving)", "\n".join(grpc)))
    return found
