"""Converting a version to TFLite, checked against the SavedModel, stored as an artifact.

    record = convert(registry, "mnist/3", quantize="int8", samples="calibration.npz")

The version is pulled (verified) into a temp folder and converted for one signature with
TensorFlow's `TFLiteConverter.from_saved_model`. The result runs under LiteRT beside the
SavedModel on the same sample inputs (parity); only if the two agree within the thresholds is it
stored, create-only, as the artifact `artifact_name(quantize, signature)` of the version:
`model.tflite` with its sha256 and size, and in `metadata` how it was made and how close it is.

Quantization modes (`QUANTIZE_MODES`):
    none      float32 throughout
    dynamic   int8 weights, activations quantized on the fly (the default)
    float16   float16 weights
    int8      full integer: weights and activations int8, calibrated on the samples. Inputs and
              outputs stay float32 (the model quantizes and dequantizes at its edges), so the
              artifact is a drop-in for the SavedModel; `metadata.io` is "kept" (in every
              mode), and `metadata.inputs` / `outputs` list the types.

Samples: an .npz with one array per input of the signature, the first axis counting samples: an
input of shape [None, 32, 32, 3] takes an array [N, 32, 32, 3], and each sample is fed as a batch
of one; an input without a batch axis, shape [4], takes [N, 4]. Without a file, GENERATED_SAMPLES
samples are generated from the signature (floats uniform in [0, 1), integers in [0, 10), unknown
dimensions 8); they check the conversion, but int8 calibrated on them knows nothing of real data's
ranges, so `metadata.samples` says which were used ("file" or "generated").

Parity, per output, over every sample: max absolute error |tflite - savedmodel|; max relative
error, the absolute error over the largest |savedmodel| of that output (scale-free, unlike an
element-wise ratio that explodes near zero); for classifier-like outputs (float, rank 2, more
than one column) the share of rows whose arg-max agrees. DEFAULT_THRESHOLDS holds the limits per
mode; callers may override each one.

Ops TFLite has no builtin kernels for fail the conversion, named. With `allow_select_tf_ops`
they are kept as TensorFlow ("select", Flex) ops. The ai-edge-litert wheel has no Flex delegate,
so such a model cannot run here: it is stored anyway, since the caller asked for it, with
`parity: {"run": false, "reason": ...}` and the ops in `metadata.select_tf_ops`, so that a
runtime without the Flex delegate can refuse it up front.

TensorFlow and LiteRT are imported inside the functions that need them: importing TensorFlow
takes seconds, and the command line must start fast.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from schemas.api import QUANTIZE_MODES
from schemas.errors import ArtifactExists, InvalidArgument, ParityFailed, UnsafeModel

from ..refs import check_artifact_name
from .converter import convert_saved_model, tensorflow
from .parity import check_parity, figure, parity_failures
from .samples import DEFAULT_SIGNATURE, generate_samples, load_samples, split_samples

KIND = "tflite"
TFLITE_PATH = "model.tflite"

THRESHOLD_KEYS = ("max_abs_error", "max_rel_error", "min_top1_agreement")
#: None: not checked. Absolute error depends on an output's scale, so by default only the
#: scale-free figures are limited; int8 is looser than dynamic, looser than float16, than none.
DEFAULT_THRESHOLDS = {
    "none": {"max_abs_error": None, "max_rel_error": 1e-4, "min_top1_agreement": 0.97},
    "float16": {"max_abs_error": None, "max_rel_error": 1e-2, "min_top1_agreement": 0.95},
    "dynamic": {"max_abs_error": None, "max_rel_error": 5e-2, "min_top1_agreement": 0.9},
    "int8": {"max_abs_error": None, "max_rel_error": 0.15, "min_top1_agreement": 0.8},
}

# One conversion at a time per process: the converter and the calibrator are not documented as
# thread-safe, and a hub server handles requests on threads.
_LOCK = threading.Lock()


def artifact_name(quantize: str, signature: str | None = None) -> str:
    """`tflite-<quantize>` for `serving_default`, `tflite-<quantize>-<signature>` for another."""
    check_quantize(quantize)
    if signature in (None, DEFAULT_SIGNATURE):
        return f"tflite-{quantize}"
    return check_artifact_name(f"tflite-{quantize}-{signature}")


def check_quantize(quantize: str) -> str:
    if quantize not in QUANTIZE_MODES:
        raise InvalidArgument(f"unknown quantization mode {quantize!r}: use one of "
                              f"{', '.join(QUANTIZE_MODES)}")
    return quantize


def thresholds_for(quantize: str, overrides: dict | None = None) -> dict:
    """The mode's default thresholds with `overrides` (None values keep the default)."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(THRESHOLD_KEYS))
    if unknown:
        raise InvalidArgument(f"unknown threshold(s) {', '.join(unknown)}: use "
                              f"{', '.join(THRESHOLD_KEYS)}")
    limits = dict(DEFAULT_THRESHOLDS[check_quantize(quantize)])
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InvalidArgument(f"threshold {key} must be a number >= 0, not {value!r}")
        if key == "min_top1_agreement" and value > 1:
            raise InvalidArgument(f"min_top1_agreement is a share between 0 and 1, not {value}")
        limits[key] = float(value)
    return limits


def convert(registry, ref, *, quantize: str = "dynamic", samples: str | Path | bytes | None = None,
            signature: str | None = None, allow_select_tf_ops: bool = False,
            thresholds: dict | None = None, work_dir: str | Path | None = None,
            genuine_allowance: Callable[[dict], bool] = lambda record: False) -> dict:
    """Convert version `ref` of `registry` to TFLite, check it, store it; return the record.

    `samples`: an .npz path or its bytes (None: generated). `thresholds`: overrides of
    DEFAULT_THRESHOLDS[quantize]. Every input is checked before the conversion starts, and
    nothing is stored unless the conversion succeeds and passes the parity check. The graph is
    scanned first, since the converter loads it with TensorFlow: an unsafe one is refused unless
    `genuine_allowance` accepts the admin's allowance recorded for it."""
    limits = thresholds_for(quantize, thresholds)
    manifest = registry.get(ref)
    name, version = manifest["name"], manifest["version"]
    label = f"{name}/{version}"
    verdict = registry.scan_version(manifest)
    allowance = (registry.safety(manifest) or {}).get("allowance")
    if not verdict.safe and not (allowance and not verdict.refused_beyond(allowance["ops"])
                                 and genuine_allowance(allowance)):
        raise UnsafeModel(f"{label} is not converted: its graph can reach outside the model: "
                          f"{verdict.summary()}")
    signature = signature or DEFAULT_SIGNATURE
    callable_signatures = sorted(s for s in manifest["signatures"] if not s.startswith("__"))
    if signature not in callable_signatures:
        raise InvalidArgument(f"{label} has no signature {signature!r} (it has: "
                              f"{', '.join(callable_signatures) or 'none'})")
    artifact = artifact_name(quantize, signature)
    if artifact in registry.artifacts(name, version):
        raise ArtifactExists(f"{label} already has an artifact {artifact!r}; artifacts are never "
                             "overwritten (convert with another --quantize, or publish a new version)")
    inputs = manifest["signatures"][signature]["inputs"]
    if samples is not None:
        arrays, source = load_samples(samples, inputs, signature), "file"
    else:
        arrays, source = generate_samples(inputs), "generated"
    feeds = split_samples(arrays, inputs)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modelhub-convert-", dir=work_dir) as work:
        folder = Path(work) / "saved_model"
        registry.pull(label, folder)
        with _LOCK:
            model, select_ops = convert_saved_model(
                folder, signature, quantize, feeds, allow_select_tf_ops=allow_select_tf_ops,
                label=f"{label} (signature {signature})")
            parity = check_parity(folder, signature, model, feeds, select_ops=select_ops)
        failures = parity_failures(parity, limits)
        if failures:
            hint = ("; calibrate on real data with --samples" if quantize == "int8" and source == "generated"
                    else "")
            raise ParityFailed(f"the {quantize} TFLite model of {label} differs from the SavedModel "
                               f"beyond the thresholds: {'; '.join(failures)}; nothing was stored "
                               f"(thresholds can be set, e.g. --max-rel-error{hint})")
        parity["thresholds"] = limits
        path = Path(work) / TFLITE_PATH
        path.write_bytes(model)
        metadata = {
            "quantize": quantize,
            "signature": signature,
            "converter": f"tensorflow {tensorflow().__version__}",
            "samples": source,
            "sample_count": len(feeds),
            # Inputs and outputs keep the SavedModel's types in every mode (int8 included).
            "io": "kept",
            "inputs": {k: spec["dtype"] for k, spec in sorted(inputs.items())},
            "outputs": {k: spec["dtype"] for k, spec in
                        sorted(manifest["signatures"][signature]["outputs"].items())},
            "select_tf_ops": select_ops,
            "parity": parity,
            "saved_model_size": manifest["total_size"],
            "size_ratio": figure(len(model) / max(manifest["total_size"], 1)),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return registry.add_artifact(name, version, artifact, path, KIND, metadata, path=TFLITE_PATH)
