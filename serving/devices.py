"""Where models run: `auto`, `cpu`, `gpu`, `gpu:N` or `tpu`, turned into a TensorFlow device."""
from __future__ import annotations

import functools
import logging

from schemas.errors import DeviceUnavailable, InvalidArgument
from schemas.serving import DEVICE_PATTERN

log = logging.getLogger(__name__)


def check_device(device: str) -> str:
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise InvalidArgument(f"invalid device {device!r}: use auto, cpu, gpu, gpu:N or tpu")
    return device


@functools.lru_cache(maxsize=1)
def _gpus() -> tuple:
    import tensorflow as tf

    gpus = tuple(tf.config.list_physical_devices("GPU"))
    for gpu in gpus:
        try:
            # Grow GPU memory as models need it instead of taking it all at start, so several
            # models (and processes) can share a GPU.
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as e:  # already initialised; harmless
            log.debug("memory growth not set on %s: %s", gpu.name, e)
    return gpus


@functools.lru_cache(maxsize=1)
def _tpu_strategy():
    """TensorFlow's TPU strategy when a TPU is attached, else None."""
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.NotFoundError) as e:
        log.info("no TPU: %s", e)
        return None


def resolve_device(device: str) -> str:
    """The TensorFlow device name for a device setting; raises if the hardware is absent."""
    check_device(device)
    if device == "cpu":
        return "/CPU:0"
    if device == "tpu":
        if _tpu_strategy() is None:
            raise DeviceUnavailable("--device tpu was asked for, but no TPU is attached")
        return "/TPU:0"
    gpus = _gpus()
    if device == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= len(gpus):
        found = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
        raise DeviceUnavailable(f"--device {device} was asked for, but this machine has {found}")
    return f"/GPU:{index}"


def load_scope(device_name: str):
    """The context a model is loaded (and run) in: the TPU strategy's scope or a device."""
    import tensorflow as tf

    if device_name.startswith("/TPU"):
        return _tpu_strategy().scope()
    return tf.device(device_name)
