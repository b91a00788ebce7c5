"""Parity: the .tflite (under LiteRT) and the SavedModel (under TensorFlow) on the same feeds.

Per output, over every sample: max absolute error |tflite - savedmodel|; max relative error, the
absolute error over the largest |savedmodel| of that output (scale-free, unlike an element-wise
ratio that explodes near zero); for classifier-like outputs (float, rank 2, more than one
column) the share of rows whose arg-max agrees.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from schemas.errors import ConversionFailed, InvalidArgument, ParityFailed, first_line

from .converter import tensorflow


def figure(x: float) -> float:
    return float(f"{x:.6g}")


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts[0].ndim else np.stack(parts)


def _compare(expected: np.ndarray, actual: np.ndarray, key: str) -> dict:
    if expected.shape != actual.shape:
        raise ParityFailed(f"output {key!r} has shape {list(actual.shape)} in the TFLite model "
                           f"but {list(expected.shape)} in the SavedModel; nothing was stored")
    if expected.dtype.kind not in "fiub" or actual.dtype.kind not in "fiub":
        share = float(np.mean(expected == actual)) if expected.size else 1.0
        return {"exact_match": figure(share)}
    want, got = expected.astype(np.float64), actual.astype(np.float64)
    diff = np.abs(got - want)
    diff[np.isnan(want) & np.isnan(got)] = 0.0  # NaN where the SavedModel has NaN too
    if not np.all(np.isfinite(diff)):
        raise ParityFailed(f"output {key!r} of the TFLite model has NaN or infinite values where "
                           "the SavedModel has none; nothing was stored")
    largest_error = float(diff.max()) if diff.size else 0.0
    scale = float(np.nanmax(np.abs(want))) if want.size else 0.0
    result = {"max_abs_error": figure(largest_error),
              "max_rel_error": figure(largest_error / max(scale, 1e-6))}
    if expected.dtype.kind == "f" and expected.ndim == 2 and expected.shape[1] > 1:
        agree = np.argmax(expected, axis=1) == np.argmax(actual, axis=1)
        result["top1_agreement"] = figure(float(np.mean(agree)))
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
        raise ConversionFailed(f"LiteRT cannot run the converted model: {first_line(e)}") from e
    tf = tensorflow()
    function = tf.saved_model.load(str(folder)).signatures[signature]
    expected: dict[str, list] = defaultdict(list)
    results: dict[str, list] = defaultdict(list)
    for i, feed in enumerate(feeds):
        try:
            answer = function(**{k: tf.constant(v) for k, v in feed.items()})
        except (tf.errors.OpError, ValueError, TypeError) as e:
            raise InvalidArgument(f"the SavedModel fails on sample {i}: {first_line(e)}") from e
        try:
            lite = actual[0] if i == 0 else runner(**feed)
        except (RuntimeError, ValueError) as e:
            raise ConversionFailed(f"LiteRT fails on sample {i}: {first_line(e)}") from e
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
