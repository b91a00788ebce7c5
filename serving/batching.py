"""Dynamic batching: concurrent requests for one signature are merged along dimension 0, run as
one model call, and split back.

TensorFlow runs 32 rows almost as fast as one, so under load a merged call serves many times the
rows. The knobs are TensorFlow Serving's (`max_batch_size`, `batch_timeout_micros`,
`max_enqueued_batches`, `num_batch_threads`, `allowed_batch_sizes`).

There is no scheduler thread. A request that finds fewer than `num_batch_threads` batches
running runs one itself (the *leader*), taking along whatever compatible requests are queued;
the others wait. When a leader finishes, it hands the lead to the oldest waiting request. So a
lone request runs at once on its own thread (no hand-off, no added latency), and under load
requests pile up while the model is busy and go in the next call. With `batch_timeout_micros`
set, a leader also waits up to that long for its batch to fill, as TF Serving does.

A request whose rows do not merge with the others (another inner shape or dtype) waits for a
batch of its own kind; one with more rows than `max_batch_size` runs alone. If a merged call
fails, each request in it is run again on its own, so a bad request fails alone and never takes
its batch down with it. A full queue is refused at once with `Overloaded` (503).
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from schemas.errors import InvalidArgument, Overloaded
from schemas.serving import BatchingOptions

Arrays = dict[str, np.ndarray]


def batchable(spec: dict) -> bool:
    """Whether a signature can be batched: every input and output is batch-major (a known rank
    with a free first dimension), so requests stack and results split along dimension 0."""
    tensors = list(spec["inputs"].values()) + list(spec["outputs"].values())
    return bool(spec["inputs"]) and all(
        t["shape"] is not None and len(t["shape"]) >= 1 and t["shape"][0] == -1 for t in tensors)


@dataclass(eq=False)
class _Task:
    arrays: Arrays
    rows: int
    key: tuple
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    alone: bool = False  # its merged call failed: run it again by itself, on its own thread
    outputs: Arrays | None = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    padding: int = 0
    refused: int = 0


class Batcher:
    """Merges concurrent calls of one signature. `run` takes named arrays (rows along dimension
    0) and returns named arrays with as many rows."""

    def __init__(self, run: Callable[[Arrays], Arrays], options: BatchingOptions):
        self._run = run
        self.options = options
        self.stats = BatchStats()
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_rows = 0
        self._running = 0
        self._filling = 0  # leaders waiting (batch_timeout_micros) for their batch to fill
        self._lock = threading.Condition()
        self._capacity = options.max_enqueued_batches * options.max_batch_size

    def __call__(self, arrays: Arrays) -> Arrays:
        rows = _rows(arrays)
        if not rows:  # no rows, or inputs that disagree on dimension 0 (TF will say why)
            return self._run(arrays)
        task = _Task(arrays, rows, _key(arrays))
        with self._lock:
            if self._queue and self._queued_rows + rows > self._capacity:
                self.stats.refused += 1
                raise Overloaded(f"the batch queue is full ({self._queued_rows} rows waiting); "
                                 "retry shortly")
            self._queue.append(task)
            self._queued_rows += rows
            if self._filling:
                self._lock.notify_all()  # join the batch a leader is waiting to fill
            elif self._running < self.options.num_batch_threads:
                self._running += 1
                task.lead = True
        if not task.lead:
            task.done.wait()
        if task.lead:
            self._lead(task)
        elif task.alone:
            self._run_alone(task)
        if task.error is not None:
            raise task.error
        return task.outputs

    def _lead(self, own: _Task) -> None:
        """Run one batch that includes `own`, then pass the lead on."""
        batch = [own]
        try:
            batch = self._take(own)
            self._run_batch(batch)
        except BaseException as e:  # e.g. KeyboardInterrupt: no batch mate may wait forever
            for task in batch:
                if task is not own and not task.done.is_set():
                    task.error = e
                    task.done.set()
            raise
        finally:
            with self._lock:
                waiting = next((t for t in self._queue if not t.lead), None)
                if waiting is not None:
                    waiting.lead = True  # keeps this thread's slot
                    waiting.done.set()
                else:
                    self._running -= 1

    def _take(self, own: _Task) -> list[_Task]:
        """`own` and the oldest queued tasks that stack with it, up to max_batch_size rows,
        waiting up to batch_timeout_micros for the batch to fill."""
        limit = self.options.max_batch_size
        deadline = time.monotonic() + self.options.batch_timeout_micros / 1e6
        batch, rows = [own], own.rows
        with self._lock:
            self._remove(own)
            while True:
                for task in list(self._queue):
                    if task.lead or task.key != own.key or rows + task.rows > limit:
                        continue
                    batch.append(task)
                    rows += task.rows
                    self._remove(task)
                remaining = deadline - time.monotonic()
                if rows >= limit or remaining <= 0:
                    return batch
                self._filling += 1
                try:
                    self._lock.wait(remaining)
                finally:
                    self._filling -= 1

    def _remove(self, task: _Task) -> None:
        self._queue.remove(task)
        self._queued_rows -= task.rows

    def _run_batch(self, batch: list[_Task]) -> None:
        rows = sum(t.rows for t in batch)
        size = self.options.padded_size(rows)
        with self._lock:
            self.stats.batches += 1
            self.stats.rows += rows
            self.stats.padding += size - rows
        if len(batch) == 1 and size == rows:
            self._run_alone(batch[0])  # nothing to merge: no copies
            return
        try:
            outputs = self._run(_stack([t.arrays for t in batch], size - rows))
            _check_rows(outputs, size)
        except Exception:
            # One bad request must not fail the others: each runs again by itself, on its own
            # thread, so they go in parallel and only the bad one fails.
            for task in batch[1:]:
                task.alone = True
                task.done.set()
            self._run_alone(batch[0])
            return
        start = 0
        for task in batch:
            task.outputs = {k: v[start:start + task.rows] for k, v in outputs.items()}
            start += task.rows
            task.done.set()

    def _run_alone(self, task: _Task) -> None:
        try:
            task.outputs = self._run(task.arrays)
        except Exception as e:  # re-raised on the task's own thread
            task.error = e


def _rows(arrays: Arrays) -> int | None:
    sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if len(sizes) != 1 or None in sizes:
        return None
    return sizes.pop()


def _key(arrays: Arrays) -> tuple:
    """Requests stack only with requests of the same input dtypes and inner shapes."""
    return tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in arrays.items()))


def _stack(requests: list[Arrays], padding: int) -> Arrays:
    """The requests' inputs concatenated along dimension 0, padded with copies of the first row
    (TF Serving pads the same way; the padded rows' results are dropped)."""
    stacked = {}
    for name in requests[0]:
        parts = [r[name] for r in requests]
        if padding:
            parts.append(np.repeat(parts[0][:1], padding, axis=0))
        stacked[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return stacked


def _check_rows(outputs: Arrays, rows: int) -> None:
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != rows:
            raise InvalidArgument(f"output {name} has {array.shape[0] if array.ndim else 'no'} "
                                  f"rows for a batch of {rows}: the signature is not batch-major")
