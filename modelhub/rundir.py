"""What the worker processes of one `modelhub serve` share on disk: a private run folder with
Prometheus' multiprocess files (`metrics/`) and one file per live worker saying whether it is
ready (`workers/`), so that a scrape of any worker sums all of them and `/readyz` on any worker
means every worker is ready.

This module imports nothing heavy: `PROMETHEUS_MULTIPROC_DIR` must be set before
prometheus_client is first imported, in the master, before the workers fork.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
STARTING, READY = "starting", "ready"


@dataclass(frozen=True)
class RunDir:
    path: Path
    #: how many workers the server runs: fewer live ones is not ready (one is restarting)
    workers: int

    @classmethod
    def create(cls, workers: int) -> "RunDir":
        path = Path(tempfile.mkdtemp(prefix="modelhub-run-"))
        (path / "metrics").mkdir()
        (path / "workers").mkdir()
        os.environ[METRICS_VARIABLE] = str(path / "metrics")
        return cls(path, workers)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # --- worker readiness ---------------------------------------------------------------------

    def _worker_file(self, pid: int) -> Path:
        return self.path / "workers" / str(pid)

    def worker_state(self, pid: int, state: str) -> None:
        """Written by the worker: STARTING when it boots, READY (or STARTING again) as its
        models are loaded. Replaced atomically: a reader never sees half a word."""
        staged = self.path / "workers" / f".{pid}"
        staged.write_text(state)
        os.replace(staged, self._worker_file(pid))

    def worker_gone(self, pid: int) -> None:
        """Called by the master when a worker exits."""
        with contextlib.suppress(FileNotFoundError):
            self._worker_file(pid).unlink()

    def all_ready(self) -> bool:
        states = []
        for entry in (self.path / "workers").iterdir():
            if entry.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                states.append(entry.read_text())
        return len(states) >= self.workers and all(s == READY for s in states)
