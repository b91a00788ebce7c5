"""The two models of `benchmarks/serving.py`, and TensorFlow called in-process on them (the limit
the servers are compared with). Run by serving.py in child processes, so that TensorFlow never
shares the process that drives the load generator:

    python benchmarks/models.py build DIR                  both models into DIR (reused if there)
    python benchmarks/models.py inprocess DIR/dense --duration 10 --batch 32

`build` writes, for each model, into DIR/<model>/:

- `saved_model/`   `keras.Model.export()`: signature `serving_default`, input named after the
                   Keras Input, output `output_0`;
- `model.keras`    the same weights in Keras' own format (MLflow logs the model from it);
- `input.npy`      one row of input (float32, what every request sends);
- `reference.npy`  the SavedModel's output for that row (what every server must answer);
- `meta.json`      the input and output names and shapes of the signature.

`inprocess` loads the SavedModel with `tf.saved_model.load` and calls its signature the way
a server does (numpy in, `tf.constant`, the concrete function, `.numpy()` out), from one thread,
with batch 1 and with `--batch` rows, each for `--duration` seconds (and at least 5 calls) after a
warm-up; then, with `--threads N`, with batch 1 from N threads at once, as a threaded server that
does not batch calls it. It prints one JSON object: calls/s, rows/s and latency percentiles of
each (`batch_1`, `batch_32`, `batch_1_threads_N`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

MODELS = ("dense", "image")
SIGNATURE = "serving_default"
SEED = 20240601


def _build_keras(kind: str):
    import keras

    keras.utils.set_random_seed(SEED)
    if kind == "dense":
        inputs = keras.Input(shape=(784,), name="pixels")
        hidden = keras.layers.Dense(256, activation="relu")(inputs)
        outputs = keras.layers.Dense(10, activation="softmax")(hidden)
        return keras.Model(inputs, outputs, name="dense")
    # real architecture, random weights: the cost of a forward pass is what matters here
    return keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))


def _input_row(kind: str) -> np.ndarray:
    """What a client would send: 8-bit pixels scaled the way each model expects."""
    rng = np.random.default_rng(SEED)
    if kind == "dense":
        return (rng.integers(0, 256, (1, 784)).astype(np.float32) / np.float32(255))
    return (rng.integers(0, 256, (1, 224, 224, 3)).astype(np.float32) / np.float32(127.5)
            - np.float32(1))


def build(folder: Path, kind: str) -> None:
    """One model into `folder` (built beside it and renamed when complete)."""
    if (folder / "meta.json").is_file():
        return
    import tensorflow as tf

    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model = _build_keras(kind)
    model.save(partial / "model.keras")
    model.export(str(partial / "saved_model"), verbose=False)

    loaded = tf.saved_model.load(str(partial / "saved_model"))
    function = loaded.signatures[SIGNATURE]
    (input_name, input_spec), = function.structured_input_signature[1].items()
    (output_name, output_spec), = function.structured_outputs.items()
    row = _input_row(kind)
    reference = function(**{input_name: tf.constant(row)})[output_name].numpy()
    np.save(partial / "input.npy", row)
    np.save(partial / "reference.npy", reference)
    (partial / "meta.json").write_text(json.dumps({
        "model": kind, "signature": SIGNATURE,
        "input": {"name": input_name, "shape": [-1 if d is None else d for d in input_spec.shape],
                  "dtype": input_spec.dtype.name},
        "output": {"name": output_name,
                   "shape": [-1 if d is None else d for d in output_spec.shape],
                   "dtype": output_spec.dtype.name},
        "tensorflow": tf.__version__,
        "parameters": int(model.count_params()),
    }, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds), q) * 1000)


def inprocess(folder: Path, duration: float, batch: int, warmup: float, threads: int = 0,
              min_calls: int = 5, device: str = "cpu") -> dict:
    import tensorflow as tf

    placement = "/GPU:0" if device == "gpu" else "/CPU:0"

    meta = json.loads((folder / "meta.json").read_text())
    input_name, output_name = meta["input"]["name"], meta["output"]["name"]
    with tf.device(placement):  # the variables, and (below, in every thread) each call
        function = tf.saved_model.load(str(folder / "saved_model")).signatures[SIGNATURE]
    row = np.load(folder / "input.npy")
    reference = np.load(folder / "reference.npy")

    def calls(array: np.ndarray, deadline: float, latencies: list[float]) -> None:
        now = time.perf_counter()
        while now < deadline or len(latencies) < min_calls:
            with tf.device(placement):
                function(**{input_name: tf.constant(array)})[output_name].numpy()
            later = time.perf_counter()
            latencies.append(later - now)
            now = later

    runs = [(f"batch_{batch}" if size > 1 else "batch_1", size, 1) for size in (1, batch)]
    if threads > 1:
        runs.append((f"batch_1_threads_{threads}", 1, threads))
    results = {}
    for key, size, workers in runs:
        array = np.ascontiguousarray(np.repeat(row, size, axis=0))
        with tf.device(placement):
            out = function(**{input_name: tf.constant(array)})[output_name].numpy()
        if not np.allclose(out, np.repeat(reference, size, axis=0), rtol=1e-3, atol=1e-5):
            raise SystemExit(f"in-process output of batch {size} differs from the reference")
        calls(array, time.perf_counter() + warmup, [])
        per_thread = [[] for _ in range(workers)]
        start = time.perf_counter()
        pool = [threading.Thread(target=calls, args=(array, start + duration, latencies))
                for latencies in per_thread]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - start
        latencies = [x for part in per_thread for x in part]
        results[key] = {
            "batch": size, "threads": workers, "calls": len(latencies), "seconds": elapsed,
            "calls_per_s": len(latencies) / elapsed,
            "rows_per_s": len(latencies) * size / elapsed,
            "p50_ms": _percentile_ms(latencies, 50), "p99_ms": _percentile_ms(latencies, 99),
        }
    return {"model": meta["model"], "tensorflow": tf.__version__, "device": device,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "results": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build both models (skipped where already built)")
    p_build.add_argument("folder", type=Path)
    p_build.add_argument("--models", default=",".join(MODELS))
    p_run = sub.add_parser("inprocess", help="time the SavedModel's signature in this process")
    p_run.add_argument("folder", type=Path)
    p_run.add_argument("--duration", type=float, default=10.0)
    p_run.add_argument("--warmup", type=float, default=1.0)
    p_run.add_argument("--batch", type=int, default=32)
    p_run.add_argument("--threads", type=int, default=0,
                       help="also batch 1 from this many threads at once (0: not)")
    p_run.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "build":
        for kind in args.models.split(","):
            build(args.folder / kind, kind)
    else:
        json.dump(inprocess(args.folder, args.duration, args.batch, args.warmup, args.threads,
                            device=args.device), sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
