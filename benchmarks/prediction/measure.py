"""Timing: a load generator run against a server, with the CPU of the server, the generator
and everything else accounted for; measurements repeated when the machine was not quiet."""
from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.cpu import (
    children_cpu_seconds,
    machine_busy_seconds,
    own_cpu_seconds,
    tree_cpu_seconds,
    wait_for_quiet,
)
from tests.support.loadgen import load_command
from tests.support.processes import REPO, Server

from .bodies import Body, check_answer
from .report import BUSY_CPUS, fmt_ms

BENCH_DIR = Path(__file__).resolve().parent.parent
#: other processes using more than BUSY_CPUS cores during a measurement skew it: it is taken
#: again, after waiting (up to --quiet-wait seconds) for them to use less than QUIET_CPUS
QUIET_CPUS = 0.1
#: fewer answers than this in a measurement and it is taken again, longer
MIN_ANSWERS = 20


@dataclass
class Plan:
    durations: dict[str, float]
    warmup: float
    concurrency: dict[str, list[int]]
    quiet_wait: float  # 0: neither wait for a quiet machine nor measure again
    generator: str = "wrk"
    max_duration: float = 60.0  # how long a measurement with too few answers may be made


def run_load(command: list[str], parse, server_pid: int) -> dict:
    """Run the load generator to its end; its summary plus where the CPU went meanwhile."""
    busy, own, kids = machine_busy_seconds(), own_cpu_seconds(), children_cpu_seconds()
    srv = tree_cpu_seconds(server_pid)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    srv = tree_cpu_seconds(server_pid) - srv
    gen = children_cpu_seconds() - kids
    other = machine_busy_seconds() - busy - srv - gen - (own_cpu_seconds() - own)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    result = parse(done.stdout)
    ok = result["status_codes"].get(200, 0)
    if not ok:  # no answer, no latency (wrk prints zeros then)
        result.update(p50_ms=None, p99_ms=None, mean_ms=None)
    errors = sum(n for code, n in result["status_codes"].items() if code != 200)
    result.update({
        "requests": ok, "errors": errors + result["transport_errors"],
        "requests_per_s": ok / result["seconds"] if result["seconds"] else 0.0,
        "server_cpus": srv / wall, "load_generator_cpus": gen / wall,
        # CPU time the server spent per answered request (all its processes), in ms
        "server_ms_per_request": round(srv / ok * 1000, 3) if ok else None,
        "other_cpus": max(0.0, other) / wall, "wall_s": wall,
    })
    return result


@dataclass(frozen=True)
class ModelData:
    """What the benchmark knows of a model: its signature's names and shapes, the row every
    request sends, and the prediction TensorFlow gives for it in-process."""

    meta: dict
    row: np.ndarray
    reference: np.ndarray


def url_of(srv: Server, body: Body) -> str:
    if body.fmt == "grpc":
        return f"http://127.0.0.1:{srv.grpc_port}{body.request.path}"
    return srv.url + body.request.path


def measure(srv: Server, label: str, bodies: list[Body], plan: Plan,
            models: dict[str, ModelData], records: list[dict], workers: int = 1) -> None:
    """Check the answers of each request kind, then time each at every concurrency of the plan."""
    for body in bodies:
        data = models[body.model]
        check_answer(srv, body, data.reference, data.meta, data.row, times=4 * workers)
    pid = srv.process.pid
    for body in bodies:
        req, generator = body.request, body.generator or plan.generator
        url = url_of(srv, body)
        if plan.warmup > 0:  # first calls, connections, threads: at c=1, untimed
            run_load(*load_command(generator, url, req, 1, plan.warmup), pid)
        for conc in plan.concurrency[body.model]:
            seconds = plan.durations[body.model]
            command, parse = load_command(generator, url, req, conc, seconds)
            waited = wait_for_quiet(pid, plan.quiet_wait, QUIET_CPUS)
            result = run_load(command, parse, pid)
            used = generator
            if result["requests"] < MIN_ANSWERS and result["errors"] == 0 and generator != "h2load":
                # A slow server (a peer with images): too few answers for percentiles, and wrk
                # drops the requests in flight at its deadline. Measure longer, with hey if there
                # is one, which waits for them (at these rates its CPU use does not matter).
                longer = min(plan.max_duration, seconds * max(2, math.ceil(
                    2 * MIN_ANSWERS / max(result["requests"], 1))))
                if longer > seconds:
                    used = "hey" if shutil.which("hey") else generator
                    print(f"  ({result['requests']} answers in {seconds:g} s: measuring for "
                          f"{longer:g} s with {used})", flush=True)
                    seconds = longer
                    waited += wait_for_quiet(pid, plan.max_duration, QUIET_CPUS)
                    command, parse = load_command(used, url, req, conc, seconds)
                    result = run_load(command, parse, pid)
            attempts = 1
            if result["other_cpus"] > BUSY_CPUS and plan.quiet_wait > 0:
                print(f"  (other processes took {result['other_cpus']:.2f} cores: measuring again)",
                      flush=True)
                waited += wait_for_quiet(pid, plan.quiet_wait, QUIET_CPUS)
                again = run_load(command, parse, pid)
                attempts = 2
                if again["other_cpus"] < result["other_cpus"]:
                    result = again
            result.update(attempts=attempts, waited_for_quiet_s=waited)
            record = {"model": body.model, "config": label, "format": body.fmt,
                      "concurrency": conc, "rows_per_request": 1,
                      "rows_per_s": result["requests_per_s"], "load_generator": used,
                      "command": shlex.join(command), **result}
            records.append(record)
            print(f"  {body.model:5} {body.fmt:6} c={conc:<3} {record['requests_per_s']:9.1f} req/s  "
                  f"p50 {fmt_ms(record['p50_ms'])} ms  p99 {fmt_ms(record['p99_ms'])} ms  "
                  f"errors {record['errors']}  CPU server {record['server_cpus']:.2f} "
                  f"({record['server_ms_per_request']} ms/req) {used} "
                  f"{record['load_generator_cpus']:.2f} other {record['other_cpus']:.2f}",
                  flush=True)


def run_inprocess(models_dir: Path, model: str, seconds: float, warmup: float,
                  quiet_wait: float, threads: int, device: str = "cpu") -> dict:
    """models.py's in-process timing in a child process (measured again, like the servers, when
    other processes took more than BUSY_CPUS meanwhile)."""
    def once() -> dict:
        wait_for_quiet(None, quiet_wait, QUIET_CPUS)
        busy, own, kids = machine_busy_seconds(), own_cpu_seconds(), children_cpu_seconds()
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(BENCH_DIR / "models.py"), "inprocess",
                               str(models_dir / model), "--duration", str(seconds),
                               "--warmup", str(warmup), "--batch", "32",
                               "--threads", str(threads), "--device", device],
                              capture_output=True, text=True, check=False, cwd=REPO)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"in-process run of {model} failed:\n{done.stderr[-3000:]}")
        other = (machine_busy_seconds() - busy) - (children_cpu_seconds() - kids) \
            - (own_cpu_seconds() - own)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["other_cpus"] = max(0.0, other) / wall  # TensorFlow's import included
        return result

    result = once()
    if result["other_cpus"] > BUSY_CPUS and quiet_wait > 0:
        print(f"  (other processes took {result['other_cpus']:.2f} cores: measuring again)",
              flush=True)
        again = once()
        if again["other_cpus"] < result["other_cpus"]:
            result = again
    return result
