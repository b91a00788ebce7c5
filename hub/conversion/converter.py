"""Running TensorFlow's TFLite converter on a SavedModel, and reading its errors for the ops
TFLite lacks. TensorFlow is imported inside the functions: importing it takes seconds."""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from schemas.errors import ConversionFailed, UnsupportedOps, first_line

SELECT_OPS_HINT = ("pass --allow-select-tf-ops (API: \"allow_select_tf_ops\": true) to keep them "
                   "as TensorFlow ops, which need the Flex delegate wherever the model runs")


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
    return (useful or errors or [first_line(text)])[0][:300]


def tensorflow():
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
    tf = tensorflow()
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
