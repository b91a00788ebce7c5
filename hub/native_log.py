"""TensorFlow's native (C++) log, filtered by severity on its way to stderr.

TensorFlow 2.21 logs through absl before absl is initialised, so `TF_CPP_MIN_LOG_LEVEL` no longer
quiets it: every process that imports TensorFlow prints oneDNN notices, CPU feature hints and,
on machines without a GPU, CUDA probing errors that read like failures to a newcomer. Here the
process's stderr goes through a pipe read by a thread, which drops native log lines below
`TF_CPP_MIN_LOG_LEVEL` (0 all, 1 from warnings, 2 from errors, 3 only fatal ones; modelhub's
default is 3) and passes everything else through unchanged. Python's own errors and logs are
never touched.
"""
from __future__ import annotations

import atexit
import os
import re
import sys
import threading

#: `I0000 00:00:1796163570.457883    9852 port.cc:153] ...` (absl's prefix), by severity.
_NATIVE_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:[\d.]+\s+\d+ [^\]]+\] ")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
_ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called"
DEFAULT_LEVEL = 3

_installed = False


def level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL))
    except ValueError:
        return DEFAULT_LEVEL


def keep(line: bytes, minimum: int) -> bool:
    match = _NATIVE_LINE.match(line)
    if match:
        return _SEVERITY[match.group(1)] >= minimum
    return not (minimum >= 1 and line.startswith(_ABSL_NOTICE))


def filter_stderr() -> None:
    """Route this process's stderr (fd 2) through the filter, once. Call it before TensorFlow
    is imported; lines still in the pipe are written out at exit."""
    global _installed
    minimum = level()
    if _installed or minimum <= 0:
        return
    _installed = True
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(line + b"\n" for line in lines if keep(line, minimum))
                if out:
                    os.write(real, out)
            if pending and keep(pending, minimum):
                os.write(real, pending)

    thread = threading.Thread(target=pump, name="native-log", daemon=True)
    thread.start()

    @atexit.register
    def drain() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last writer goes: the thread reads to its end
        thread.join(timeout=2)
