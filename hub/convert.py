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

import io
import math
import os
import re
import tempfile
import threading
import time
import warnings
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from schemas.api import QUANTIZE_MODES
from schemas.errors import (
    ArtifactExists,
    ConversionFailed,
    InvalidArgument,
    ParityFailed,
    UnsupportedOps,
)

from .refs import check_artifact_name

KIND = "tflite"
TFLITE_PATH = "model.tflite"
DEFAULT_SIGNATURE = "serving_default"
GENERATED_SAMPLES = 32
#: A samples file's limits: representative datasets are a few hundred samples.
MAX_SAMPLES = 2000
MAX_SAMPLE_BYTES = 1024**3
SEED = 0
#: Size given to unknown dimensions (other than a batch axis) of generated samples.
UNKNOWN_DIM = 8

THRESHOLD_KEYS = ("max_abs_error", "max_rel_error", "min_top1_agreement")
#: None: not checked. Absolute error depends on an output's scale, so by default only the
#: scale-free figures are limited; int8 is looser than dynamic, looser than float16, than none.
DEFAULT_THRESHOLDS = {
    "none": {"max_abs_error": None, "max_rel_error": 1e-4, "min_top1_agreement": 0.97},
    "float16": {"max_abs_error": None, "max_rel_error": 1e-2, "min_top1_agreement": 0.95},
    "dynamic": {"max_abs_error": None, "max_rel_error": 5e-2, "min_top1_agreement": 0.9},
    "int8": {"max_abs_error": None, "max_rel_error": 0.15, "min_top1_agreement": 0.8},
}

SELECT_OPS_HINT = ("pass --allow-select-tf-ops (API: \"allow_select_tf_ops\": true) to keep them "
                   "as TensorFlow ops, which need the Flex delegate wherever the model runs")

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


# --- samples ------------------------------------------------------------------------------------


def _has_batch_axis(spec: dict) -> bool:
    return bool(spec["shape"]) and spec["shape"][0] == -1


def _sample_shape(spec: dict) -> list[int]:
    """The shape of one sample of an input (-1 where any size goes)."""
    shape = spec["shape"]
    return shape[1:] if _has_batch_axis(spec) else shape


_NUMPY_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                 "uint16", "uint32", "uint64", "bool"}


def _dtype_matches(array: np.ndarray, dtype: str) -> bool:
    if dtype == "string":
        return array.dtype.kind in "SU"
    return dtype in _NUMPY_DTYPES and array.dtype == np.dtype(dtype)


def _check_npz_sizes(stream, where: str, how: str) -> None:
    """Read every member's .npy header, before any data: a few KB of deflated zeros can declare
    gigabytes, and the samples are held in memory (and each is run through both models)."""
    total = 0
    try:
        with zipfile.ZipFile(stream) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise InvalidArgument(f"{where}: member {info.filename!r} is not an .npy "
                                          f"array; {how}")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise InvalidArgument(f"{where}: member {info.filename!r} uses .npy "
                                              f"format {version}; save it with numpy.savez")
                if shape and shape[0] > MAX_SAMPLES:
                    raise InvalidArgument(f"{where}: {shape[0]} samples in "
                                          f"{info.filename[:-4]!r}; at most {MAX_SAMPLES} are "
                                          "used for calibration and parity")
                total += math.prod(shape) * dtype.itemsize
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise InvalidArgument(f"{where} is not a readable .npz ({_first_line(e)}); {how}") from e
    if total > MAX_SAMPLE_BYTES:
        raise InvalidArgument(f"{where} holds {total / 2**20:.0f} MiB of arrays; at most "
                              f"{MAX_SAMPLE_BYTES // 2**20} MiB")


def load_samples(source: str | Path | bytes, inputs: dict[str, dict],
                 signature: str = DEFAULT_SIGNATURE) -> dict[str, np.ndarray]:
    """Read and check an .npz of samples for a signature's `inputs` (name -> spec)."""
    where = "the samples file" if isinstance(source, bytes) else f"samples file {source}"
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise InvalidArgument(f"{where} does not exist")
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    how = "write one with numpy.savez(path, <input name>=<array>, ...)"
    if not zipfile.is_zipfile(stream):  # an .npz is a zip of .npy files
        raise InvalidArgument(f"{where} is not an .npz archive; {how}")
    _check_npz_sizes(stream, where, how)
    if hasattr(stream, "seek"):
        stream.seek(0)
    try:
        with np.load(stream, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise InvalidArgument(f"{where} holds object (pickled) arrays, which are never "
                                  "loaded: save numeric or string arrays") from e
        raise InvalidArgument(f"{where} is not a readable .npz ({_first_line(e)}); {how}") from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise InvalidArgument(f"{where} is not a readable .npz ({_first_line(e)}); {how}") from e
    missing = sorted(set(inputs) - set(arrays))
    if missing:
        raise InvalidArgument(f"{where} lacks input(s) {', '.join(missing)} of signature "
                              f"{signature!r} (it has: {', '.join(sorted(arrays)) or 'nothing'})")
    extra = sorted(set(arrays) - set(inputs))
    if extra:
        raise InvalidArgument(f"{where} has array(s) {', '.join(extra)} that are not inputs of "
                              f"signature {signature!r} (its inputs: {', '.join(sorted(inputs))})")
    counts = set()
    for key, array in sorted(arrays.items()):
        spec = inputs[key]
        if not _dtype_matches(array, spec["dtype"]):
            raise InvalidArgument(f"{where}: input {key!r} is {array.dtype}, the signature "
                                  f"wants {spec['dtype']}")
        if array.ndim == 0:
            raise InvalidArgument(f"{where}: input {key!r} is a scalar; its first axis must "
                                  "count the samples")
        if spec["shape"] is not None:
            want = _sample_shape(spec)
            got = list(array.shape[1:])
            if len(got) != len(want) or any(w not in (-1, g) for w, g in zip(want, got)):
                shown = ", ".join("N" if i == 0 else ("None" if d == -1 else str(d))
                                  for i, d in enumerate([0, *want]))
                raise InvalidArgument(f"{where}: input {key!r} has shape {list(array.shape)}, "
                                      f"the signature wants [{shown}] (N samples)")
        counts.add(array.shape[0])
    if len(counts) > 1:
        raise InvalidArgument(f"{where}: the arrays hold different numbers of samples "
                              f"({', '.join(map(str, sorted(counts)))})")
    if counts == {0}:
        raise InvalidArgument(f"{where} holds no samples")
    return {key: (np.char.encode(a, "utf-8") if a.dtype.kind == "U" else a)
            for key, a in arrays.items()}


def generate_samples(inputs: dict[str, dict], count: int = GENERATED_SAMPLES,
                     seed: int = SEED) -> dict[str, np.ndarray]:
    """Random samples shaped like a signature's inputs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for key, spec in sorted(inputs.items()):
        if spec["shape"] is None:
            raise InvalidArgument(f"input {key!r} has an unknown shape, so samples cannot be "
                                  "generated for it: pass a samples file (--samples FILE.npz)")
        shape = [count] + [UNKNOWN_DIM if d == -1 else d for d in _sample_shape(spec)]
        dtype = spec["dtype"]
        if dtype.startswith("float") and dtype in _NUMPY_DTYPES:
            arrays[key] = rng.random(shape).astype(dtype)
        elif dtype.startswith(("int", "uint")) and dtype in _NUMPY_DTYPES:
            arrays[key] = rng.integers(0, 10, shape).astype(dtype)
        elif dtype == "bool":
            arrays[key] = rng.random(shape) < 0.5
        elif dtype == "string":
            letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype="S1")
            words = [b"".join(rng.choice(letters, rng.integers(1, 9))) for _ in range(np.prod(shape))]
            arrays[key] = np.array(words, dtype=object).astype(bytes).reshape(shape)
        else:
            raise InvalidArgument(f"samples cannot be generated for input {key!r} of type "
                                  f"{dtype}: pass a samples file (--samples FILE.npz)")
    return arrays


def split_samples(arrays: dict[str, np.ndarray], inputs: dict[str, dict]) -> list[dict]:
    """One feed per sample: a batch of one for inputs with a batch axis. A signature without
    inputs gets one empty feed (one call)."""
    count = len(next(iter(arrays.values()))) if arrays else 1
    return [{key: (a[i:i + 1] if inputs[key]["shape"] is None or _has_batch_axis(inputs[key])
                   else a[i]) for key, a in arrays.items()} for i in range(count)]


# --- converting ---------------------------------------------------------------------------------


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


_SELECT_OPS = re.compile(r"TF Select ops: ([^\n]+)")
_CUSTOM_OPS = re.compile(r"Custom ops: ([^\n]+)")
_ERROR_LINE = re.compile(r"error: (.+)")


def unsupported_ops(text: str) -> tuple[list[str], list[str]]:
    """(ops with a TensorFlow "select" kernel, ops with none) named in a converter error."""
    def names(pattern: re.Pattern) -> list[str]:
        return sorted({op.strip() for m in pattern.finditer(text) for op in m.group(1).split(",")
                       if op.strip()})

    return names(_SELECT_OPS), names(_CUSTOM_OPS)


def _converter_message(text: str) -> str:
    """The most telling line of a converter error (they run to pages of MLIR)."""
    errors = [m.group(1).strip() for m in _ERROR_LINE.finditer(text)]
    useful = [e for e in errors if not e.startswith("failed while converting")]
    return (useful or errors or [_first_line(text)])[0][:300]


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _run_converter(tf, folder: Path, signature: str, quantize: str, feeds: list[dict],
                   select_ops: bool) -> bytes:
    with warnings.catch_warnings():
        # The int8 calibrator uses tf.lite.Interpreter internally, which warns it is deprecated.
        warnings.simplefilter("ignore", UserWarning)
        return _converter(tf, folder, signature, quantize, feeds, select_ops).convert()


def _converter(tf, folder: Path, signature: str, quantize: str, feeds: list[dict],
               select_ops: bool):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=[signature])
    builtins = tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS
    converter.target_spec.supported_ops = [builtins] + ([tf.lite.OpsSet.SELECT_TF_OPS] if select_ops else [])
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        # inference_input_type / inference_output_type stay float32: a drop-in replacement.
        converter.representative_dataset = lambda: iter(feeds)
    return converter


def convert_saved_model(folder: Path, signature: str, quantize: str, feeds: list[dict], *,
                        allow_select_tf_ops: bool = False, label: str = "the model"
                        ) -> tuple[bytes, list[str]]:
    """The .tflite bytes and the TensorFlow ops kept as select ops (empty unless allowed and
    needed). Builtins are tried first, so a model that needs no select ops never gets any."""
    tf = _tensorflow()
    try:
        return _run_converter(tf, folder, signature, quantize, feeds, select_ops=False), []
    # The converter raises its own ConverterError, and ValueError, RuntimeError... from inside.
    except Exception as e:  # noqa: BLE001 - any failure is reported, read for op names
        text = str(e)
    select, custom = unsupported_ops(text)
    if custom:
        also = f" (and ops that need select TF ops: {', '.join(select)})" if select else ""
        raise UnsupportedOps(f"{label} uses ops that neither TFLite nor TensorFlow's select ops "
                             f"can run: {', '.join(custom)}{also}; nothing was stored")
    if not select:
        raise ConversionFailed(f"the TFLite converter failed on {label} ({quantize}): "
                               f"{_converter_message(text)}")
    if not allow_select_tf_ops:
        raise UnsupportedOps(f"{label} uses ops TFLite has no builtin kernels for: "
                             f"{', '.join(select)}; {SELECT_OPS_HINT}")
    try:
        return _run_converter(tf, folder, signature, quantize, feeds, select_ops=True), select
    except Exception as e:  # noqa: BLE001 - as above
        text = str(e)
    if quantize == "int8" and "Flex delegate" in text:
        # Calibration runs the model, and TensorFlow's calibrator has no Flex delegate either.
        raise UnsupportedOps(f"{label} cannot be calibrated for int8: the calibrator cannot run "
                             f"the select TF ops {', '.join(select)}; use --quantize dynamic or "
                             "float16")
    raise ConversionFailed(f"the TFLite converter failed on {label} ({quantize}) even with "
                           f"select TF ops: {_converter_message(text)}")


# --- parity -------------------------------------------------------------------------------------


def _figure(x: float) -> float:
    return float(f"{x:.6g}")


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts[0].ndim else np.stack(parts)


def _compare(expected: np.ndarray, actual: np.ndarray, key: str) -> dict:
    if expected.shape != actual.shape:
        raise ParityFailed(f"output {key!r} has shape {list(actual.shape)} in the TFLite model "
                           f"but {list(expected.shape)} in the SavedModel; nothing was stored")
    if expected.dtype.kind not in "fiub" or actual.dtype.kind not in "fiub":
        share = float(np.mean(expected == actual)) if expected.size else 1.0
        return {"exact_match": _figure(share)}
    want, got = expected.astype(np.float64), actual.astype(np.float64)
    diff = np.abs(got - want)
    diff[np.isnan(want) & np.isnan(got)] = 0.0  # NaN where the SavedModel has NaN too
    if not np.all(np.isfinite(diff)):
        raise ParityFailed(f"output {key!r} of the TFLite model has NaN or infinite values where "
                           "the SavedModel has none; nothing was stored")
    largest_error = float(diff.max()) if diff.size else 0.0
    scale = float(np.nanmax(np.abs(want))) if want.size else 0.0
    result = {"max_abs_error": _figure(largest_error),
              "max_rel_error": _figure(largest_error / max(scale, 1e-6))}
    if expected.dtype.kind == "f" and expected.ndim == 2 and expected.shape[1] > 1:
        agree = np.argmax(expected, axis=1) == np.argmax(actual, axis=1)
        result["top1_agreement"] = _figure(float(np.mean(agree)))
    return result


def check_parity(folder: Path, signature: str, model: bytes, feeds: list[dict], *,
                 select_ops: list[str] = ()) -> dict:
    """Run the .tflite (LiteRT) and the SavedModel (TensorFlow) on every feed and compare.

    Returns {"run": True, "samples", "max_abs_error", "max_rel_error", "top1_agreement",
    "outputs": {name: figures}}, or {"run": False, "reason"} when LiteRT cannot run select ops."""
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    try:
        runner = Interpreter(model_content=model).get_signature_runner(signature)
        actual = [runner(**feed) for feed in feeds[:1]]
    except (RuntimeError, ValueError) as e:
        if select_ops:
            return {"run": False, "reason": (
                f"ai-edge-litert {version('ai-edge-litert')} has no Flex delegate, so it cannot "
                f"run the select TF ops {', '.join(select_ops)}; the model needs a runtime "
                "linked with the Flex delegate (e.g. tensorflow-lite-select-tf-ops on Android)")}
        raise ConversionFailed(f"LiteRT cannot run the converted model: {_first_line(e)}") from e
    tf = _tensorflow()
    function = tf.saved_model.load(str(folder)).signatures[signature]
    expected: dict[str, list] = defaultdict(list)
    results: dict[str, list] = defaultdict(list)
    for i, feed in enumerate(feeds):
        try:
            answer = function(**{k: tf.constant(v) for k, v in feed.items()})
        except (tf.errors.OpError, ValueError, TypeError) as e:
            raise InvalidArgument(f"the SavedModel fails on sample {i}: {_first_line(e)}") from e
        try:
            lite = actual[0] if i == 0 else runner(**feed)
        except (RuntimeError, ValueError) as e:
            raise ConversionFailed(f"LiteRT fails on sample {i}: {_first_line(e)}") from e
        for key, value in answer.items():
            if key not in lite:
                raise ConversionFailed(f"the TFLite model has no output {key!r} (it has: "
                                       f"{', '.join(sorted(lite))})")
            expected[key].append(value.numpy())
            results[key].append(np.asarray(lite[key]))
    outputs = {key: _compare(_joined(expected[key]), _joined(results[key]), key)
               for key in sorted(expected)}

    def figures(name: str) -> list[float]:
        return [o[name] for o in outputs.values() if name in o]

    top1 = figures("top1_agreement")
    exact = figures("exact_match")
    return {"run": True, "samples": len(feeds),
            "max_abs_error": max(figures("max_abs_error"), default=0.0),
            "max_rel_error": max(figures("max_rel_error"), default=0.0),
            "top1_agreement": min(top1) if top1 else None,
            **({"exact_match": min(exact)} if exact else {}),
            "outputs": outputs}


def parity_failures(parity: dict, limits: dict) -> list[str]:
    """What exceeds the thresholds, as phrases (empty: within them, or parity not run)."""
    if not parity.get("run"):
        return []
    failures = []
    for key, output in parity["outputs"].items():
        for figure, limit in (("max_abs_error", limits["max_abs_error"]),
                              ("max_rel_error", limits["max_rel_error"])):
            if limit is not None and output.get(figure, 0.0) > limit:
                failures.append(f"{figure.replace('_', ' ')} {output[figure]:.3g} > {limit:g} "
                                f"(output {key})")
        share = output.get("top1_agreement")
        limit = limits["min_top1_agreement"]
        if share is not None and limit is not None and share < limit:
            failures.append(f"top-1 agreement {share:.1%} < {limit:.1%} (output {key})")
        if output.get("exact_match", 1.0) < 1.0:
            failures.append(f"only {output['exact_match']:.1%} of output {key} matches exactly")
    return failures


# --- the whole path -----------------------------------------------------------------------------


def convert(registry, ref, *, quantize: str = "dynamic", samples: str | Path | bytes | None = None,
            signature: str | None = None, allow_select_tf_ops: bool = False,
            thresholds: dict | None = None, work_dir: str | Path | None = None) -> dict:
    """Convert version `ref` of `registry` to TFLite, check it, store it; return the record.

    `samples`: an .npz path or its bytes (None: generated). `thresholds`: overrides of
    DEFAULT_THRESHOLDS[quantize]. Every input is checked before the conversion starts, and
    nothing is stored unless the conversion succeeds and passes the parity check."""
    limits = thresholds_for(quantize, thresholds)
    manifest = registry.get(ref)
    name, version = manifest["name"], manifest["version"]
    label = f"{name}/{version}"
    signature = signature or DEFAULT_SIGNATURE
    callable_signatures = sorted(s for s in manifest["signatures"] if not s.startswith("__"))
    if signature not in callable_signatures:
        raise InvalidArgument(f"{label} has no signature {signature!r} (it has: "
                              f"{', '.join(callable_signatures) or 'none'})")
    artifact = artifact_name(quantize, signature)
    if artifact in manifest["artifacts"]:
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
            "converter": f"tensorflow {_tensorflow().__version__}",
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
            "size_ratio": _figure(len(model) / max(manifest["total_size"], 1)),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return registry.add_artifact(name, version, artifact, path, KIND, metadata, path=TFLITE_PATH)
