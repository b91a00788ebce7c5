"""`make demo`: build the example models, publish them into a local store, show what to try."""
from __future__ import annotations

import os
import tempfile

from schemas.settings import load_settings

from .. import native_log
from ..registry import Registry
from . import BUILDERS, DESCRIPTIONS


def main() -> None:
    native_log.filter_stderr()  # TensorFlow's C++ notices (TF_CPP_MIN_LOG_LEVEL=0: all of them)
    store = load_settings().store  # the Makefile sets MODELHUB_STORE
    registry = Registry.open(store)
    published = set(registry.model_names())
    with tempfile.TemporaryDirectory(prefix="modelhub-examples-") as work:
        for name, build in BUILDERS.items():
            if name in published:
                print(f"{name}: already published")
                continue
            path = build(os.path.join(work, name))
            manifest = registry.publish(path, name, description=DESCRIPTIONS[name],
                                        tags={"example": "true"}, license="Apache-2.0",
                                        aliases=["stable"])
            print(f"published {name}/{manifest['version']} (alias stable)")
    print(f"""
The example models are in the store at {store}; modelhub starts on http://127.0.0.1:8080
(models load in a few seconds: curl -s http://127.0.0.1:8080/readyz). Try:

  curl -s -X POST http://127.0.0.1:8080/v1/models/half_plus_two:predict -d '{{"instances": [1.0, 2.0, 5.0]}}'
  curl -s -X POST http://127.0.0.1:8080/v1/models/multi_io/labels/stable:predict \\
       -d '{{"instances": [{{"text": "hello", "values": [1, 2, 3], "count": 2}}]}}'
  curl -s -X POST http://127.0.0.1:8080/v2/models/half_plus_two/infer \\
       -d '{{"inputs": [{{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}}]}}'
  curl -s http://127.0.0.1:8080/v1/models
  # gRPC on 127.0.0.1:8500: TF Serving's PredictionService and KServe V2's GRPCInferenceService
  # (tensorflow_serving.apis and tritonclient.grpc work unchanged)
  curl -s http://127.0.0.1:8080/monitoring/prometheus/metrics | grep modelhub_requests
  curl -s http://127.0.0.1:8080/api/v1/models
  curl -s http://127.0.0.1:8080/api/v1/models/half_plus_two/versions/stable
  MODELHUB_URL=http://127.0.0.1:8080 .venv/bin/modelhub pull half_plus_two -o /tmp/half_plus_two
  .venv/bin/python -c "import tensorflow_hub as th; print(th.load('http://127.0.0.1:8080/models/half_plus_two/1'))"

  export MODELHUB_STORE={store}        # or work on the store directly
  .venv/bin/modelhub ls
  .venv/bin/modelhub show multi_io@stable
  .venv/bin/modelhub token create --scope write   # for publishing through the hub
""", flush=True)


if __name__ == "__main__":
    main()
