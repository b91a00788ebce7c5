"""Pull of a large SavedModel over HTTP (`HubClient` against `modelhub serve`), relative to `cp -r`.

    .venv/bin/python benchmarks/http_pull.py [--size-mb 1024] [--repeat 3]
                                             [--workdir /tmp/modelhub-bench] [--json OUT]

The generated model of `benchmarks/publish_pull.py` (`--size-mb` MB of random float32 weights,
built once into `--workdir` and reused) is published into a fresh LocalStore, and that store is
served on 127.0.0.1 by `modelhub serve --role hub --workers 2` (gunicorn, gthread workers, 8 threads
each) for the whole run; the server is stopped (SIGTERM) at the end, also on errors and Ctrl-C.
Client and server share this machine, so they also share its CPUs.

What it measures:

- `cp -r`             copying the model folder: the ceiling for moving these bytes between folders.
- `pull, cold cache`  `HubClient.pull("bench/1", dest)` with an empty cache folder: the manifest
                      request, then every file downloaded into the content-addressed cache (files
                      in parallel, each one stream; sha256 checked as it arrives; the server checks
                      it too as it reads the store), a snapshot of hard links, and a copy of the
                      snapshot into `dest`.
- `pull, warm cache`  the same with the cache left by the cold pull: the manifest of an explicit
                      version comes from the cache and the snapshot is complete, so this is no
                      HTTP request at all, only the copy from the cache into `dest`.
- `fetch, cold cache` `HubClient.fetch("bench/1")` with an empty cache folder: the download into
                      the cache without the copy to a destination, which is what `hub.load` does.

The `requests` column counts the HTTP responses the client received during the operation (the
largest count over the repetitions). A ratio is `cp seconds / operation seconds` on medians, so
0.5x means "takes twice as long as cp -r".

Timing is that of publish_pull.py (see its docstring): every repetition uses fresh cache and
destination folders, removed afterwards; dirty pages are flushed (untimed) before each timed
operation; the page cache is not dropped, so the store is read from memory; and before each timed
operation (unless `--no-prefault`) as much memory as the operation will fill with page cache, plus
256 MB, is touched and freed, so that VMs which hand freed memory back to their host do not charge
host page faults to whichever operation comes first. A cold pull writes the model twice (cache
and destination), so it gets twice the size. The baseline is measured in the same run, interleaved
with the operations, so the ratios hold on whatever machine runs this. The last line says how much
CPU time other processes took meanwhile: client and server need about a CPU each, so on a small
machine anything else running (a test suite, say) shows up directly in these numbers.

MB means 2**20 bytes throughout, as in `build_large`.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from benchmarks.common import (
    MIB,
    MODEL_NAME,
    MODEL_REF,
    REPO_ROOT,
    copy_tree,
    ensure_model,
    environment,
    folder_size,
    parse_transfer_args,
    render_table,
    reproduce_command,
    scratch,
    timed,
)
from hub.client import HubClient
from hub.registry import Registry
from tests.support.cpu import children_cpu_seconds, machine_busy_seconds, own_cpu_seconds
from tests.support.processes import free_port, modelhub_command, server_process

CP = "cp -r"
PULL_COLD = "pull, cold cache"
PULL_WARM = "pull, warm cache"
FETCH_COLD = "fetch, cold cache"
OPERATIONS = (CP, PULL_COLD, PULL_WARM, FETCH_COLD)
#: How many copies of the model each operation writes (what its prefault has to cover).
COPIES_WRITTEN = {CP: 1, PULL_COLD: 2, PULL_WARM: 1, FETCH_COLD: 1}

SERVER_WORKERS = 2
SERVER_START_TIMEOUT_S = 60


# --- the server -----------------------------------------------------------------------------------

@contextlib.contextmanager
def hub_server(store: Path, log_path: Path) -> Iterator[str]:
    """`modelhub serve --role hub` on `store` at a free local port, until the block exits;
    yields its URL. Meanwhile SIGTERM to this process exits through the same cleanup (as Ctrl-C
    does)."""
    def exit_on_sigterm(signum, frame):
        raise SystemExit(128 + signum)

    previous_handler = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        port = free_port()
        command = [*modelhub_command(), "--store", str(store), "serve", "--role", "hub",
                   "--host", "127.0.0.1", "--port", str(port), "--workers", str(SERVER_WORKERS)]
        with server_process("the hub server", command, port, log_path,
                            lambda url: requests.get(f"{url}/readyz", timeout=2).status_code == 200,
                            env={"MODELHUB_ANONYMOUS_READ": "true"},
                            timeout=SERVER_START_TIMEOUT_S) as server:
            yield server.url
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


# --- the operations -------------------------------------------------------------------------------

@contextlib.contextmanager
def counting_client(url: str, cache: Path, counts: dict[str, int], op: str) -> Iterator[HubClient]:
    """A client that adds every response it receives to counts[op]; its connections are closed
    on exit (an idle keep-alive connection would hold up the server's shutdown)."""
    client = HubClient(url, cache=str(cache))

    def count(response, *args, **kwargs):
        counts[op] = counts.get(op, 0) + 1

    client.session.hooks["response"].append(count)
    with contextlib.closing(client.session):
        yield client


def check_size(folder: Path, size: int, what: str) -> None:
    if folder_size(folder) != size:
        raise RuntimeError(f"{what} holds {folder_size(folder)} bytes, expected {size}")


def run_repetition(model: Path, url: str, workdir: Path, size: int,
                   prefault_bytes: dict[str, int]) -> tuple[dict[str, float], dict[str, int]]:
    """One timing of every operation, each into fresh folders that are removed afterwards."""
    def measure(op, operation):
        return timed(operation, prefault_bytes=prefault_bytes[op])

    times, counts = {}, {op: 0 for op in OPERATIONS if op != CP}
    with scratch(workdir / "copy") as dest:
        times[CP] = measure(CP, lambda: copy_tree(model, dest))
    with scratch(workdir / "cache") as cache:
        with scratch(workdir / "pulled") as dest, \
                counting_client(url, cache, counts, PULL_COLD) as client:
            times[PULL_COLD] = measure(PULL_COLD, lambda: client.pull(MODEL_REF, dest))
            check_size(dest, size, "the cold pull")
        with scratch(workdir / "pulled") as dest, \
                counting_client(url, cache, counts, PULL_WARM) as client:
            times[PULL_WARM] = measure(PULL_WARM, lambda: client.pull(MODEL_REF, dest))
            check_size(dest, size, "the warm pull")
    with scratch(workdir / "cache") as cache, \
            counting_client(url, cache, counts, FETCH_COLD) as client:
        fetched = []
        times[FETCH_COLD] = measure(FETCH_COLD, lambda: fetched.append(client.fetch(MODEL_REF)))
        check_size(fetched[0][1], size, "the fetched snapshot")
    return times, counts


# --- reporting ------------------------------------------------------------------------------------

def summarize(runs: list[dict[str, float]], counts: list[dict[str, int]], size: int) -> dict:
    """Best, median, MB/s, ratio to cp -r (on medians) and HTTP requests for every operation."""
    medians = {op: statistics.median(run[op] for run in runs) for op in OPERATIONS}
    summary = {}
    for op in OPERATIONS:
        seconds = [run[op] for run in runs]
        summary[op] = {
            "seconds": seconds,
            "best_s": min(seconds),
            "median_s": medians[op],
            "mb_per_s": size / MIB / medians[op],
            "ratio_to_cp": medians[CP] / medians[op],
            "http_requests": max(c[op] for c in counts) if op in counts[0] else None,
        }
    return summary


def format_table(summary: dict[str, dict]) -> str:
    header = ("operation", "best s", "median s", "MB/s", "x cp -r", "requests")
    return render_table(header, [
        (op, f"{s['best_s']:.2f}", f"{s['median_s']:.2f}", f"{s['mb_per_s']:.0f}",
         f"{s['ratio_to_cp']:.2f}x", "-" if s["http_requests"] is None else str(s["http_requests"]))
        for op, s in summary.items()
    ])


class OtherCpu:
    """CPU time that processes other than this one and its children (the server, cp) use from
    now on: busy time of the whole machine minus our own. Kernel threads count as others, so
    writeback done by flusher threads shows up here too, by a second or two."""

    def __init__(self):
        self.start_busy, self.start_own = machine_busy_seconds(), self._own()

    @staticmethod
    def _own() -> float:
        return own_cpu_seconds() + children_cpu_seconds()

    def seconds(self) -> float:
        """Only complete once every child has been waited for (their times count then)."""
        return (machine_busy_seconds() - self.start_busy) - (self._own() - self.start_own)


# --- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    args = parse_transfer_args(__doc__, argv, "the model is built (and reused, shared with publish_pull.py) and the store and caches go")
    started = time.perf_counter()
    command = reproduce_command("benchmarks/http_pull.py", args)
    print(f"reproduce: cd {REPO_ROOT} && {command}")
    model = ensure_model(args.workdir, args.size_mb)
    size = folder_size(model)
    env = environment(args.workdir)
    print(f"model: {model} ({size / MIB:.0f} MB); " + ", ".join(f"{k} {v}" for k, v in env.items()))
    others = OtherCpu()
    for variable in ("MODELHUB_OFFLINE", "MODELHUB_TOKEN"):  # ask the server, anonymously
        os.environ.pop(variable, None)

    prefault_bytes = {op: 0 if args.no_prefault else COPIES_WRITTEN[op] * size + 256 * MIB
                      for op in OPERATIONS}
    runs, counts = [], []
    with scratch(args.workdir / "http") as base:
        base.mkdir(parents=True)
        Registry.open(str(base / "store")).publish(model, MODEL_NAME)
        with hub_server(base / "store", base / "server.log") as url:
            print(f"serving {MODEL_REF} from {base / 'store'} at {url} "
                  f"({SERVER_WORKERS} gunicorn workers)", flush=True)
            for _ in range(2 * SERVER_WORKERS):  # let every worker answer once, untimed
                requests.get(f"{url}/api/v1/models/{MODEL_NAME}/versions/1", timeout=10)
            for rep in range(1, args.repeat + 1):
                times, rep_counts = run_repetition(model, url, base, size, prefault_bytes)
                runs.append(times)
                counts.append(rep_counts)
                print(f"repetition {rep}/{args.repeat}: "
                      + ", ".join(f"{op} {s:.2f}s" for op, s in times.items()), flush=True)

    summary = summarize(runs, counts, size)
    print(f"\n{args.repeat} repetitions, warm page cache, client and server on this machine; "
          "MB/s and ratios from medians (ratio = cp seconds / operation seconds)\n")
    print(format_table(summary))
    elapsed = time.perf_counter() - started
    other_cpu_s = others.seconds()
    print(f"\ntotal run time {elapsed:.0f} s; other processes used {other_cpu_s:.0f} CPU seconds "
          f"meanwhile ({other_cpu_s / elapsed:.2f} of {os.cpu_count()} CPUs)")
    if other_cpu_s / elapsed > 0.25:
        print("warning: other work ran on this machine during the run; it skews the numbers")

    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "size_bytes": size, "repeat": args.repeat,
            "prefault_bytes": prefault_bytes, "server_workers": SERVER_WORKERS,
            "environment": env, "operations": summary, "total_run_s": elapsed,
            "other_processes_cpu_s": other_cpu_s,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
