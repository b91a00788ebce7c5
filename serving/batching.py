"""Dynamic batching: concurrent requests for one signature are merged along dimension 0, run as
one model call, and split back.

TensorFlow runs 32 rows almost as fast as one, so under load a merged call serves many times the
rows. The knobs are TensorFlow Serving's (`max_batch_size`, `batch_timeout_micros`,
`max_enqueued_batches`, `num_batch_threads`, `allowed_batch_sizes`).

The batcher lives on the server's event loop: a request is a task in an in-process queue and a
future to await, never a thread. Up to `num_batch_threads` batches are in flight at once, each a
coroutine that takes the oldest queued request and the compatible ones behind it, runs them as
one call on a small thread pool (the model call is the only work off the loop), hands each
request its rows, and goes on while the queue holds work. Before it takes a batch, it lets the
loop run a few passes to bring more requests in (those whose bytes have already arrived): all of
them under load (the last batch merged several requests), otherwise until a pass brings nothing.
So a lone request runs at once, with no timed wait, and under load requests pile up while the
model is busy and go in the next call. With
`batch_timeout_micros` set, a batch also waits up to that long to fill, as TF Serving does;
meanwhile a request of another kind starts its own batch if a slot is free.

A model call measured to take under INLINE_SECONDS (a small model, like most served on CPUs)
runs on the event loop itself: handing it to a thread and back costs more than the call, and
the requests that arrive meanwhile wait in the socket buffers and go into the next batch, as
they would behind a busy thread. Slower models always run on the threads, so the loop stays
free for everyone else. So do batches holding a gRPC request (the front sets MODEL_CALL_ON_LOOP
off): gRPC's requests reach the loop through gRPC's own threads, which need the core a call on
the loop would hold. On one worker under 32 gRPC clients, batches grew from 1.1 to 4.5 requests
and throughput doubled when they ran on the threads instead.

A request whose rows do not merge with the others (another inner shape or dtype) waits for a
batch of its own kind; one with more rows than `max_batch_size`, or with none, runs alone. If a
merged call fails, each request in it runs again by itself, all in parallel, so a bad request
fails alone and never takes its batch down with it. A full queue is refused at once with
`Overloaded` (503), and a request whose deadline passes while it is queued is dropped, not run.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from schemas.errors import DeadlineExceeded, InvalidArgument, Overloaded
from schemas.serving import BatchingOptions

Arrays = dict[str, np.ndarray]

#: Model calls faster than this (smoothed over recent calls) run on the event loop.
INLINE_SECONDS = 0.005
#: Before it takes a batch, a batch slot lets the event loop run this many passes at most, while
#: each pass brings more requests into the queue (requests whose bytes have arrived are read
#: and parsed first, and go into this batch rather than the next).
GATHER_PASSES = 10
#: Whether the current request's model call may run on the event loop (when it is fast).
MODEL_CALL_ON_LOOP: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "MODEL_CALL_ON_LOOP", default=True)
#: Weight of the newest call in the smoothed call time.
_SMOOTHING = 0.1


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
    future: asyncio.Future
    #: time.monotonic() after which the request is no longer wanted (None: no deadline)
    deadline: float | None = None
    on_loop: bool = field(default_factory=lambda: MODEL_CALL_ON_LOOP.get())

    @property
    def abandoned(self) -> bool:
        return self.future.done()  # cancelled by its caller, or already answered


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    padding: int = 0
    refused: int = 0
    expired: int = 0


@dataclass(eq=False)
class _Filling:
    """A batch waiting (batch_timeout_micros) for more requests of its kind."""

    tasks: list[_Task]
    rows: int
    full: asyncio.Event = field(default_factory=asyncio.Event)


class Batcher:
    """Merges concurrent calls of one signature. `run` takes named arrays (rows along dimension
    0) and returns named arrays with as many rows; it runs on the batcher's thread pool."""

    def __init__(self, run: Callable[[Arrays], Arrays], options: BatchingOptions,
                 on_batch: Callable[[int, int], None] | None = None):
        """`on_batch(rows, padding)` hears every merged call (for metrics)."""
        self._run = run
        self.options = options
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._filling: dict[tuple, _Filling] = {}
        self._capacity = options.max_enqueued_batches * options.max_batch_size
        self._pool = ThreadPoolExecutor(options.num_batch_threads, thread_name_prefix="batch")
        # Reruns after a failed merged call go in parallel, each on a thread of its own.
        self._rerun_pool = ThreadPoolExecutor(options.max_batch_size, thread_name_prefix="rerun")
        #: smoothed seconds per merged call; unknown (infinite) until calls were timed
        self._call_seconds = float("inf")
        #: requests in the last batch taken
        self._last_batch_tasks = 0
        # No close(): a retired version's batcher lives on while requests still hold it, and
        # its pools' threads end when it is collected.

    async def __call__(self, arrays: Arrays, deadline: float | None = None) -> Arrays:
        loop = asyncio.get_running_loop()
        rows = _rows(arrays)
        if not rows:  # no rows, or inputs that disagree on dimension 0 (TF will say why)
            return await loop.run_in_executor(self._pool, self._run, arrays)
        task = _Task(arrays, rows, _key(arrays), loop.create_future(), deadline)
        filling = self._filling.get(task.key)
        if filling is not None and filling.rows + rows <= self.options.max_batch_size:
            filling.tasks.append(task)  # join the batch that waits to fill
            filling.rows += rows
            if filling.rows >= self.options.max_batch_size:
                filling.full.set()
            return await task.future
        if self._queue and self._queued_rows + rows > self._capacity:
            self.stats.refused += 1
            raise Overloaded(f"the batch queue is full ({self._queued_rows} rows waiting); "
                             "retry shortly")
        self._queue.append(task)
        self._queued_rows += rows
        if self._in_flight < self.options.num_batch_threads:
            self._in_flight += 1
            loop.create_task(self._serve_queue())
        return await task.future

    async def _serve_queue(self) -> None:
        """One batch slot: batches from the queue, one after another, while it holds work."""
        try:
            while True:
                await self._gather()
                batch = self._take()
                if not batch:
                    return
                self._last_batch_tasks = len(batch)
                if self.options.batch_timeout_micros and sum(t.rows for t in batch) < \
                        self.options.max_batch_size:
                    batch = await self._fill(batch)
                await self._run_batch(batch)
        finally:
            self._in_flight -= 1
            if self._queue and self._in_flight < self.options.num_batch_threads:
                self._in_flight += 1
                asyncio.get_running_loop().create_task(self._serve_queue())

    async def _gather(self) -> None:
        """Let requests already on their way join the queue. Under load (the last batch merged
        several requests) the loop runs all its passes, since requests keep arriving over
        them; otherwise it stops at the first pass that brings nothing, so that a lone
        request waits for nobody."""
        queued = len(self._queue)
        for _ in range(GATHER_PASSES):
            if self._queued_rows >= self.options.max_batch_size:
                return
            await asyncio.sleep(0)
            if len(self._queue) == queued and self._last_batch_tasks <= 1:
                return
            queued = len(self._queue)

    def _take(self) -> list[_Task]:
        """The oldest live queued task and the queued tasks that stack with it, up to
        max_batch_size rows; expired and abandoned tasks are dropped on the way."""
        limit = self.options.max_batch_size
        batch, rows, kept = [], 0, collections.deque()
        now = time.monotonic()
        while self._queue:
            task = self._queue.popleft()
            self._queued_rows -= task.rows
            if task.abandoned:
                continue
            if task.deadline is not None and task.deadline <= now:
                self.stats.expired += 1
                task.future.set_exception(DeadlineExceeded(
                    "the request's deadline passed while it waited for the model"))
                continue
            if not batch or (task.key == batch[0].key and rows + task.rows <= limit
                             and rows < limit):
                batch.append(task)
                rows += task.rows
            else:
                kept.append(task)
        for task in reversed(kept):  # the others keep their places
            self._queue.appendleft(task)
            self._queued_rows += task.rows
        return batch

    async def _fill(self, batch: list[_Task]) -> list[_Task]:
        filling = _Filling(batch, sum(t.rows for t in batch))
        self._filling[batch[0].key] = filling
        try:
            await asyncio.wait_for(filling.full.wait(), self.options.batch_timeout_micros / 1e6)
        except asyncio.TimeoutError:
            pass
        finally:
            if self._filling.get(batch[0].key) is filling:
                del self._filling[batch[0].key]
        return filling.tasks

    async def _run_batch(self, batch: list[_Task]) -> None:
        batch = [t for t in batch if not t.abandoned]
        if not batch:
            return
        rows = sum(t.rows for t in batch)
        size = self.options.padded_size(rows)
        self.stats.batches += 1
        self.stats.rows += rows
        self.stats.padding += size - rows
        if self._on_batch:
            self._on_batch(rows, size - rows)
        loop = asyncio.get_running_loop()
        if len(batch) == 1 and size == rows:
            await self._run_alone(batch[0], self._pool)  # nothing to merge: no copies
            return
        arrays = [t.arrays for t in batch]
        try:
            if self._call_seconds < INLINE_SECONDS and all(t.on_loop for t in batch):
                outputs = self._run_merged(arrays, size - rows, size)
            else:
                outputs = await loop.run_in_executor(self._pool, self._run_merged, arrays,
                                                     size - rows, size)
        except Exception:
            # One bad request must not fail the others: each runs again by itself, all in
            # parallel, so only the bad one fails.
            await asyncio.gather(*(self._run_alone(t, self._rerun_pool) for t in batch))
            return
        except BaseException as e:  # cancelled, or the model raised KeyboardInterrupt & co:
            interrupted = InvalidArgument(f"the batch was interrupted ({type(e).__name__})")
            for task in batch:  # nobody may wait forever
                if not task.future.done():
                    task.future.set_exception(interrupted)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        start = 0
        for task in batch:
            if not task.future.done():
                task.future.set_result({k: v[start:start + task.rows] for k, v in outputs.items()})
            start += task.rows

    def _run_merged(self, arrays: list[Arrays], padding: int, size: int) -> Arrays:
        outputs = self._timed_run(_stack(arrays, padding))
        _check_rows(outputs, size)
        return outputs

    def _timed_run(self, arrays: Arrays) -> Arrays:
        """The model call, its time folded into the smoothed call time (a race between two
        threads loses one sample at worst)."""
        started = time.perf_counter()
        outputs = self._run(arrays)
        took = time.perf_counter() - started
        previous = self._call_seconds
        self._call_seconds = took if previous == float("inf") else \
            previous + _SMOOTHING * (took - previous)
        return outputs

    async def _run_alone(self, task: _Task, pool: ThreadPoolExecutor) -> None:
        try:
            if pool is self._pool and self._call_seconds < INLINE_SECONDS and task.on_loop \
                    and task.rows <= self.options.max_batch_size:
                outputs = self._timed_run(task.arrays)
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(
                    pool, self._timed_run if pool is self._pool else self._run, task.arrays)
        except Exception as e:
            if not task.future.done():
                task.future.set_exception(e)
            return
        except BaseException as e:  # the model raised KeyboardInterrupt & co, or cancelled
            if not task.future.done():
                task.future.set_exception(InvalidArgument(
                    f"the model call was interrupted ({type(e).__name__})"))
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        if not task.future.done():
            task.future.set_result(outputs)


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
