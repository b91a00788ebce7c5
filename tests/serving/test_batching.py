"""Dynamic batching: merging, padding, isolation of bad requests, a full queue, deadlines, and
the same behaviour through a real server."""
from __future__ import annotations

import asyncio
import base64
import gc
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from schemas.errors import DeadlineExceeded, InvalidArgument, Overloaded
from serving import batching
from serving.batching import MODEL_CALL_ON_LOOP, Batcher, BatchingOptions, batchable


class RecordingModel:
    """y = 2x + 1 on every row; records the batch sizes it is called with. `hold` keeps the
    first call running so that the requests behind it pile up."""

    def __init__(self, hold: float = 0.0):
        self.calls: list[int] = []
        self.threads: list[threading.Thread] = []
        self.hold = hold
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, arrays):
        x = arrays["x"]
        self.calls.append(x.shape[0])
        self.threads.append(threading.current_thread())
        self.gate.wait(10)
        if self.hold and len(self.calls) == 1:
            time.sleep(self.hold)
        if np.isnan(x).any():
            raise InvalidArgument("x has NaN")
        return {"y": x * 2 + 1}


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array([[v, -v] for v in values], np.float32)}


def call_concurrently(batcher: Batcher, requests_: list[dict]) -> list:
    """Every request at once, as concurrent coroutines on one loop; results or exceptions."""
    async def everything():
        return await asyncio.gather(*(batcher(arrays) for arrays in requests_),
                                    return_exceptions=True)

    return asyncio.run(everything())


def call(batcher: Batcher, arrays: dict, deadline: float | None = None) -> dict:
    return asyncio.run(batcher(arrays, deadline))


def test_a_lone_request_runs_at_once():
    model = RecordingModel()
    batcher = Batcher(model, BatchingOptions(batch_timeout_micros=0, num_batch_threads=1))
    started = time.monotonic()
    out = call(batcher, rows(3.0))
    np.testing.assert_array_equal(out["y"], [[7.0, -5.0]])
    assert model.calls == [1] and time.monotonic() - started < 1
    assert model.threads[0] is not threading.current_thread()  # never on the event loop


def test_fast_calls_run_on_the_loop_unless_a_request_forbids_it(monkeypatch):
    """Once calls are timed as fast, a lone request runs on the event loop's own thread; a
    request from a front that needs the core while the model runs (gRPC) runs on the pool."""
    # "Fast" whatever else the machine is doing: a first call slowed past 5 ms by a busy
    # machine would keep the second off the loop.
    monkeypatch.setattr(batching, "INLINE_SECONDS", 60.0)
    model = RecordingModel()
    batcher = Batcher(model, BatchingOptions(batch_timeout_micros=0, num_batch_threads=1))

    async def three_calls(on_loop: bool):
        MODEL_CALL_ON_LOOP.set(on_loop)
        for value in (1.0, 2.0, 3.0):
            await batcher(rows(value))
        return threading.current_thread()

    loop_thread = asyncio.run(three_calls(True))
    assert model.threads[0] is not loop_thread  # the first call is not timed yet
    assert model.threads[1:] == [loop_thread, loop_thread]
    loop_thread = asyncio.run(three_calls(False))
    assert all(t is not loop_thread for t in model.threads[3:])
    assert MODEL_CALL_ON_LOOP.get() is True  # set inside the tasks only


def test_a_batcher_no_one_holds_lets_its_threads_go():
    """A retired version's batcher: once collected, its pool threads end."""
    model = RecordingModel()
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1))
    call(batcher, rows(1.0))  # the first call runs on a pool thread
    (worker,) = model.threads
    assert worker.is_alive() and worker is not threading.current_thread()
    del batcher
    gc.collect()
    worker.join(timeout=5)
    assert not worker.is_alive()


def test_concurrent_requests_are_merged_and_split_back_in_order():
    model = RecordingModel(hold=0.2)
    batcher = Batcher(model, BatchingOptions(max_batch_size=64, num_batch_threads=1))
    inputs = [rows(float(i), float(i) + 0.5) for i in range(40)]
    results = call_concurrently(batcher, inputs)
    for arrays, result in zip(inputs, results):
        np.testing.assert_array_equal(result["y"], arrays["x"] * 2 + 1)
    assert sum(model.calls) == 80
    assert len(model.calls) < 40 and max(model.calls) > 2  # requests were merged
    assert max(model.calls) <= 64
    assert batcher.stats.rows == 80 and batcher.stats.batches == len(model.calls)


def test_requests_arriving_while_the_model_runs_go_in_the_next_call():
    model = RecordingModel(hold=0.3)
    batcher = Batcher(model, BatchingOptions(max_batch_size=64, num_batch_threads=1))

    async def staggered():
        first = asyncio.ensure_future(batcher(rows(0.0)))
        while not model.calls:
            await asyncio.sleep(0.01)
        later = [asyncio.ensure_future(batcher(rows(float(i)))) for i in range(1, 11)]
        return await asyncio.gather(first, *later)

    results = asyncio.run(staggered())
    assert [r["y"][0, 0] for r in results] == [2 * i + 1 for i in range(11)]
    assert model.calls == [1, 10]


def test_padding_up_to_the_next_allowed_size_is_stripped_from_answers():
    model = RecordingModel()
    batcher = Batcher(model, BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 8)))
    out = call(batcher, rows(1.0, 2.0, 3.0))
    assert model.calls == [4]
    np.testing.assert_array_equal(out["y"], rows(1.0, 2.0, 3.0)["x"] * 2 + 1)
    assert batcher.stats.padding == 1


def test_a_bad_request_fails_alone_and_its_batch_mates_succeed():
    model = RecordingModel(hold=0.2)
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1))
    inputs = [rows(float(i)) for i in range(12)]
    inputs[5] = rows(float("nan"))
    results = call_concurrently(batcher, inputs)
    assert isinstance(results[5], InvalidArgument)
    for i, result in enumerate(results):
        if i != 5:
            np.testing.assert_array_equal(result["y"], inputs[i]["x"] * 2 + 1)


def test_requests_of_different_inner_shapes_are_never_stacked():
    model = RecordingModel(hold=0.2)
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1))
    narrow = {"x": np.ones((1, 2), np.float32)}
    wide = {"x": np.ones((1, 3), np.float32)}
    results = call_concurrently(batcher, [narrow, wide] * 6)
    for i, result in enumerate(results):
        assert result["y"].shape == ((1, 2) if i % 2 == 0 else (1, 3))


def test_a_request_larger_than_max_batch_size_runs_alone():
    model = RecordingModel()
    batcher = Batcher(model, BatchingOptions(max_batch_size=4, allowed_batch_sizes=(2, 4)))
    out = call(batcher, rows(*range(10)))
    assert model.calls == [10]
    assert out["y"].shape == (10, 2)


def test_a_full_queue_is_refused_at_once_and_nothing_hangs():
    model = RecordingModel()
    model.gate.clear()  # the first batch blocks until released
    batcher = Batcher(model, BatchingOptions(max_batch_size=2, max_enqueued_batches=1,
                                             num_batch_threads=1))

    async def scenario():
        first = asyncio.ensure_future(batcher(rows(0.0)))
        while not model.calls:
            await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(batcher(rows(float(i)))) for i in (1, 2)]
        await asyncio.sleep(0.2)  # both are queued behind the running batch
        started = time.monotonic()
        with pytest.raises(Overloaded, match="queue is full"):
            await batcher(rows(9.0))
        assert time.monotonic() - started < 1
        model.gate.set()
        assert (await first)["y"].shape == (1, 2)
        assert [(await f)["y"][0, 0] for f in queued] == [3.0, 5.0]

    asyncio.run(scenario())
    assert batcher.stats.refused == 1


def test_a_request_whose_deadline_passes_in_the_queue_is_dropped_not_run():
    model = RecordingModel()
    model.gate.clear()
    batcher = Batcher(model, BatchingOptions(max_batch_size=4, num_batch_threads=1))

    async def scenario():
        first = asyncio.ensure_future(batcher(rows(0.0)))
        while not model.calls:
            await asyncio.sleep(0.01)
        late = asyncio.ensure_future(batcher(rows(1.0), time.monotonic() + 0.1))
        patient = asyncio.ensure_future(batcher(rows(2.0), time.monotonic() + 30))
        await asyncio.sleep(0.3)  # the first deadline passes while the model is busy
        model.gate.set()
        with pytest.raises(DeadlineExceeded):
            await late
        return await first, await patient

    first, patient = asyncio.run(scenario())
    assert first["y"][0, 0] == 1.0 and patient["y"][0, 0] == 5.0
    assert model.calls == [1, 1]  # the expired request never reached the model
    assert batcher.stats.expired == 1


def test_batch_timeout_waits_for_a_fuller_batch():
    model = RecordingModel()
    batcher = Batcher(model, BatchingOptions(batch_timeout_micros=300_000, num_batch_threads=1))

    async def scenario():
        first = asyncio.ensure_future(batcher(rows(1.0)))
        await asyncio.sleep(0.05)
        second = await batcher(rows(2.0))
        return await first, second

    first, second = asyncio.run(scenario())
    assert first["y"][0, 0] == 3.0 and second["y"][0, 0] == 5.0
    assert model.calls == [2]


def test_with_a_timeout_staggered_requests_join_the_waiting_batch_even_with_free_threads():
    model = RecordingModel()
    batcher = Batcher(model, BatchingOptions(batch_timeout_micros=200_000, num_batch_threads=3))

    async def scenario():
        futures = []
        for i in range(3):
            futures.append(asyncio.ensure_future(batcher(rows(float(i)))))
            await asyncio.sleep(0.02)
        return await asyncio.gather(*futures)

    assert [r["y"][0, 0] for r in asyncio.run(scenario())] == [1.0, 3.0, 5.0]
    assert model.calls == [3]


def test_while_a_batch_waits_to_fill_another_shape_starts_its_own():
    model = RecordingModel()
    batcher = Batcher(model, BatchingOptions(batch_timeout_micros=300_000, num_batch_threads=2))

    async def scenario():
        narrow = asyncio.ensure_future(batcher({"x": np.ones((1, 2), np.float32)}))
        await asyncio.sleep(0.02)
        started = time.monotonic()
        wide = await batcher({"x": np.ones((1, 3), np.float32)})
        waited = time.monotonic() - started
        return await narrow, wide, waited

    narrow, wide, waited = asyncio.run(scenario())
    assert narrow["y"].shape == (1, 2) and wide["y"].shape == (1, 3)
    assert model.calls == [1, 1]
    assert waited < 0.6  # its own batch (with its own timeout), not behind the narrow one's


def test_after_a_failed_merged_call_the_requests_rerun_in_parallel():
    class SlowAlone(RecordingModel):
        def __call__(self, arrays):
            if arrays["x"].shape[0] == 1:
                time.sleep(0.3)  # each rerun takes a while
            return super().__call__(arrays)

    model = SlowAlone()
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1))
    inputs = [rows(float(i)) for i in range(6)]
    inputs[3] = rows(float("nan"))
    started = time.monotonic()
    results = call_concurrently(batcher, inputs)
    elapsed = time.monotonic() - started
    assert isinstance(results[3], InvalidArgument)
    assert model.calls == [6, 1, 1, 1, 1, 1, 1]
    assert len(set(model.threads[1:])) == 6
    assert elapsed < 1.2  # 6 reruns of 0.3 s side by side, not one after another (1.8 s)


def test_an_exception_that_is_not_an_error_still_releases_every_batch_mate():
    class Interrupting(RecordingModel):
        def __call__(self, arrays):
            if arrays["x"].shape[0] > 1:
                raise KeyboardInterrupt
            return super().__call__(arrays)

    model = Interrupting(hold=0.2)
    batcher = Batcher(model, BatchingOptions(num_batch_threads=1))

    async def scenario():
        first = asyncio.ensure_future(batcher(rows(0.0)))
        while not model.calls:
            await asyncio.sleep(0.01)
        rest = [batcher(rows(float(i))) for i in range(1, 4)]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(scenario())
    # the first ran alone; the merged call behind it was interrupted: nobody waits forever
    assert isinstance(results[0], dict)
    assert all(isinstance(r, Exception) for r in results[1:])
    call(batcher, rows(1.0))  # and the batcher still works


def test_a_request_with_no_rows_runs_by_itself():
    model = RecordingModel()
    batcher = Batcher(model, BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 8)))
    assert call(batcher, {"x": np.zeros((0, 2), np.float32)})["y"].shape == (0, 2)
    assert model.calls == [0]


@pytest.mark.parametrize("options, message", [
    (dict(max_batch_size=0), "max_batch_size"),
    (dict(num_batch_threads=-1), "num_batch_threads"),
    (dict(batch_timeout_micros=-1), "batch_timeout_micros"),
    (dict(max_batch_size=16, allowed_batch_sizes=(4, 8)), "must equal max_batch_size"),
    (dict(max_batch_size=8, allowed_batch_sizes=(8, 4, 8)), "increasing"),
])
def test_invalid_options_are_refused(options, message):
    with pytest.raises(InvalidArgument, match=message):
        BatchingOptions(**options)


def test_by_default_one_batch_runs_per_cpu_core():
    assert BatchingOptions().num_batch_threads == len(os.sched_getaffinity(0))


def test_only_batch_major_signatures_are_batched():
    def spec(inputs, outputs):
        return {"inputs": {k: {"shape": s} for k, s in inputs.items()},
                "outputs": {k: {"shape": s} for k, s in outputs.items()}}

    assert batchable(spec({"x": [-1, 3]}, {"y": [-1]}))
    assert not batchable(spec({"x": [3]}, {"y": [3]}))           # fixed first dimension
    assert not batchable(spec({"x": [-1]}, {"y": None}))         # unknown output rank
    assert not batchable(spec({"x": [-1]}, {"y": []}))           # scalar output
    assert not batchable(spec({}, {"y": [-1]}))                   # no inputs


# --- through a real server -----------------------------------------------------------------------

def batch_counts(server) -> dict[str, float]:
    text = requests.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10).text
    counts = {}
    for line in text.splitlines():
        match = re.match(r'modelhub_batch_(\w+)_total\{(.*)\} (\S+)$', line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
            if labels["model"] == "half_plus_two" and labels["version"] == "1":
                counts[f"{labels['signature']}.{match[1]}"] = float(match[3])
    return counts


def test_concurrent_http_requests_are_batched_and_answers_are_not_mixed(serving_server):
    before = batch_counts(serving_server)

    def predict(i: int):
        values = [float(i), float(i) + 0.25]
        response = requests.post(f"{serving_server.url}/v1/models/half_plus_two:predict",
                                 json={"instances": values}, timeout=30)
        return response.status_code, response.json(), values

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(predict, range(400)))
    for status, body, values in results:
        assert status == 200, body
        assert body == {"predictions": [v / 2 + 2 for v in values]}
    after = batch_counts(serving_server)
    rows = after["serving_default.rows"] - before.get("serving_default.rows", 0)
    batches = after["serving_default.batches"] - before.get("serving_default.batches", 0)
    assert rows == 800
    assert batches < 400  # at least some requests shared a model call


def test_a_request_that_fails_inside_the_model_does_not_fail_its_batch(serving_server):
    """Garbage bytes pass the signature's checks (a string tensor) but fail in TensorFlow's
    tf.Example parser; the good requests merged with it still get their answers."""
    url = f"{serving_server.url}/v1/models/half_plus_two:predict"
    good = {"signature_name": "classify_x_to_y", "inputs": {"inputs": [
        {"b64": base64.b64encode(_example(3.0)).decode()}]}}
    bad = {"signature_name": "classify_x_to_y", "inputs": {"inputs": [
        {"b64": base64.b64encode(b"\xff not a tf.Example").decode()}]}}
    bodies = [bad if i % 8 == 0 else good for i in range(64)]
    with ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(lambda b: requests.post(url, json=b, timeout=30), bodies))
    for body, response in zip(bodies, responses):
        if body is bad:
            assert response.status_code == 400 and "error" in response.json()
        else:
            assert response.status_code == 200, response.text
            assert response.json()["outputs"] == [[3.5]]


def _example(x: float) -> bytes:
    import tensorflow as tf

    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_a_grpc_call_keeps_its_model_off_the_loop():
    """The gRPC front's handler marks its own task's requests; the caller's context is left
    as it was."""
    from serving.grpc.common import Servicer, rpc

    class Access:
        async def require_async(self, token, needed):
            return None

    class DataPlane:
        def finish(self, call, status):
            pass

    class Context:
        def invocation_metadata(self):
            return ()

    class Probe(Servicer):
        @rpc(api="probe")
        async def Method(self, request, context, call):
            return MODEL_CALL_ON_LOOP.get()

    async def through_the_front():
        seen = await asyncio.create_task(Probe(DataPlane(), Access()).Method(None, Context()))
        return seen, MODEL_CALL_ON_LOOP.get()

    assert asyncio.run(through_the_front()) == (False, True)
