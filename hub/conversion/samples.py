"""Samples for a conversion: read from an .npz the user gives (checked before any data is
loaded), or generated from the signature; one feed per sample for calibration and parity.

An .npz holds one array per input of the signature, the first axis counting samples: an input of
shape [None, 32, 32, 3] takes an array [N, 32, 32, 3], and each sample is fed as a batch of one;
an input without a batch axis, shape [4], takes [N, 4]. Without a file, GENERATED_SAMPLES samples
are generated from the signature (floats uniform in [0, 1), integers in [0, 10), unknown
dimensions UNKNOWN_DIM).
"""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np

from schemas.errors import InvalidArgument, first_line

DEFAULT_SIGNATURE = "serving_default"
GENERATED_SAMPLES = 32
#: A samples file's limits: representative datasets are a few hundred samples.
MAX_SAMPLES = 2000
MAX_SAMPLE_BYTES = 1024**3
SEED = 0
#: Size given to unknown dimensions (other than a batch axis) of generated samples.
UNKNOWN_DIM = 8


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
        raise InvalidArgument(f"{where} is not a readable .npz ({first_line(e)}); {how}") from e
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
        raise InvalidArgument(f"{where} is not a readable .npz ({first_line(e)}); {how}") from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise InvalidArgument(f"{where} is not a readable .npz ({first_line(e)}); {how}") from e
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
