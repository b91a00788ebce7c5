"""Size and single-row latency of an example model's TFLite artifacts, per quantization mode,
against the SavedModel, both called in-process. Prints a markdown table.

    .venv/bin/python benchmarks/tflite_sizes.py [--example image_classifier] [--seconds 3]

The example is built, published into a temporary local registry and converted with
`hub.conversion.convert` in every mode (the path `modelhub convert` takes, parity check included).
Each model is then called with one row, from one thread, for `--seconds` after a warm-up: the
SavedModel the way a server calls it (`tf.constant` in, the signature's concrete function,
`.numpy()` out), the .tflite through LiteRT's signature runner (numpy in, numpy out).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the repository root holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hub.conversion import convert
from hub.examples import BUILDERS
from hub.registry import Registry
from hub.registry.layout import blob_key
from schemas.api import QUANTIZE_MODES

SIGNATURE = "serving_default"


def latencies(call, seconds: float, warmup: int = 50) -> list[float]:
    """Seconds per call, for `seconds` (at least 200 calls) after `warmup` calls."""
    for _ in range(warmup):
        call()
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 200:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def one_row(spec: dict, rng: np.random.Generator) -> np.ndarray:
    shape = [1 if d == -1 else d for d in spec["shape"]]
    return rng.random(shape).astype(spec["dtype"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", default="image_classifier",
                        choices=["image_classifier", "half_plus_two"])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed calls per model")
    parser.add_argument("--threads", type=int, default=None,
                        help="LiteRT interpreter threads (default: LiteRT's own default)")
    args = parser.parse_args()

    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    with tempfile.TemporaryDirectory(prefix="modelhub-tflite-bench-") as work:
        folder = BUILDERS[args.example](Path(work) / args.example)
        registry = Registry.open(str(Path(work) / "store"))
        manifest = registry.publish(folder, args.example)
        inputs = manifest["signatures"][SIGNATURE]["inputs"]
        rng = np.random.default_rng(0)
        row = {key: one_row(spec, rng) for key, spec in inputs.items()}

        function = tf.saved_model.load(str(folder)).signatures[SIGNATURE]
        tf_times = latencies(lambda: {k: v.numpy() for k, v in function(
            **{k: tf.constant(v) for k, v in row.items()}).items()}, args.seconds)
        rows = [("SavedModel (TensorFlow)", "-", manifest["total_size"], tf_times, None)]

        for mode in QUANTIZE_MODES:
            record = convert(registry, args.example, quantize=mode)
            data = registry.store.get_bytes(blob_key(record["sha256"]))
            interpreter = Interpreter(model_content=data, num_threads=args.threads)
            runner = interpreter.get_signature_runner(SIGNATURE)
            rows.append(("LiteRT", mode, record["size"],
                         latencies(lambda runner=runner: runner(**row), args.seconds),
                         record["metadata"]["parity"]))

    base_size, base_p50 = rows[0][2], statistics.median(rows[0][3])
    print(f"{args.example}, one row per call from one thread; {os.cpu_count()} CPUs; "
          f"TensorFlow {tf.__version__}, ai-edge-litert {version('ai-edge-litert')}\n")
    print("| runtime | quantize | size (bytes) | × SavedModel size | p50 ms | p90 ms | "
          "× SavedModel p50 | max rel error | top-1 agreement |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, mode, size, times, parity in rows:
        p50 = statistics.median(times)
        top1 = parity.get("top1_agreement") if parity else None
        print(f"| {name} | {mode} | {size:,} | "
              f"{size / base_size:.3f} | {p50 * 1e3:.3f} | {percentile(times, 90) * 1e3:.3f} | "
              f"{p50 / base_p50:.2f} | "
              f"{'-' if parity is None else format(parity['max_rel_error'], '.2g')} | "
              f"{'-' if top1 is None else format(top1, '.0%')} |")


if __name__ == "__main__":
    main()
