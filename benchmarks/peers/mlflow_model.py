"""Save a Keras model as an MLflow model (the `tensorflow` flavor, which MLflow uses for Keras
models), for `mlflow models serve`. Run by `benchmarks/serving.py` with the Python of MLflow's
own environment (benchmarks/.mlflow-venv), never with modelhub's:

    benchmarks/.mlflow-venv/bin/python benchmarks/peers/mlflow_model.py MODEL.keras OUT_DIR
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import mlflow.tensorflow

    model = keras.models.load_model(source)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    mlflow.tensorflow.save_model(model, str(partial))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    print(f"saved {source} as an MLflow model in {out} (mlflow {mlflow.__version__})")


if __name__ == "__main__":
    main()
