"""Prediction serving throughput and latency, against TensorFlow in-process, the bare web stack
and MLflow's model server, all measured in one run on this machine.

    .venv/bin/python benchmarks/serving.py [--quick] [--duration S] [--out DIR]
                                           [--workers N] [--threads N] [--generator wrk|hey]
                                           [--no-mlflow] [--self-check] ...   (--help: all)

Two models, built once into `--workdir` and reused (see benchmarks/models.py):

- `dense`  Keras 784 -> 256 (relu) -> 10 (softmax), 0.2 M parameters: the web stack dominates;
- `image`  keras.applications.MobileNetV2, 224x224x3 (random weights, real architecture):
           the model dominates.

Each is exported with `keras.Model.export` (a SavedModel) and every row below runs that same
SavedModel; every request carries one row (one 784-value vector, or one 224x224x3 image):

- `in-process, batch 1`   `tf.saved_model.load` + the `serving_default` signature called from
                          one thread with one row: the latency floor and the batch-1 limit;
- `in-process, batch 32`  the same with 32 rows per call: the batched limit;
- `in-process, batch 1, threads`  batch 1 from as many threads as the highest concurrency: what
                          TensorFlow gives concurrent callers that do not batch (a threaded server
                          without batching cannot do better);
- `modelhub, batching off/on`  `modelhub serve --role serving --no-batching / --batching`
                          (plus `--batch-args`), `--workers` x `--threads` gthread workers;
- `bare Flask`            benchmarks/bare_flask.py under gunicorn with the options the modelhub
                          server ran with (read from its command line), parsing the same bodies
                          the same way (modelhub's own JSON body parser where it has one, else
                          orjson; then numpy) and answering bodies of the same size, without a
                          model: what the web stack alone costs;
- `MLflow`                `mlflow models serve --env-manager local --workers N` on the same Keras
                          model (the `tensorflow` flavor), installed by this script into its own
                          environment (benchmarks/.mlflow-venv, kept between runs); skipped, with
                          a message, when it cannot be installed (and by --quick, unless it is
                          installed already).

Formats: `json` is TF Serving's REST API (`POST /v1/models/NAME:predict`, `{"instances": [row]}`;
MLflow gets the same body at `/invocations`); `binary` is the Open Inference Protocol with the
binary tensor extension (`POST /v2/models/NAME/infer`: a JSON header, then the raw float32
bytes; image model only). Bodies are written once with orjson (shortest float32 text).

Load: `wrk -t 1 -c CONCURRENCY -d DURATION` (or `hey -z DURATION -c CONCURRENCY` with
`--generator hey`), keep-alive connections, at concurrency 1 and 32, after an untimed warm-up at
concurrency 1. wrk is the default because the load generator shares the 2 cores with the server:
hey (Go) takes 0.25-0.45 of a core at these rates, wrk (C, one event loop) 0.05-0.1, and a run
measured bare Flask with 2 workers 35-55 % faster under wrk. `--cross-check` (on unless --quick)
measures bare Flask's dense rows with the other generator too. Servers run one at a time, each
serving both models; before a server is timed, one request per model and format must answer 200
with the prediction TensorFlow gives in-process (bare Flask: 200 and an answer of the right
size). Requests per second count 200 answers only; every other status and every transport error
or timeout counts as an error. Requests/s and rows/s are the same for the servers (one row per
request).

Ratios: `x b1` = rows/s / in-process batch-1 rows/s; `x b32` = rows/s / in-process batch-32
rows/s; `x bare` = requests/s / bare Flask requests/s at the same format and concurrency;
`+p50` = p50 - in-process batch-1 p50. `CPU srv/gen/other` is the cores the server, the load
generator and everything else on the machine used on average during the timed part. Another
workload on a 2-core machine ruins the numbers, so each measurement first waits (up to
`--quiet-wait` seconds) for the rest of the machine to be idle, and one during which other
processes still took more than a quarter of a core is taken again (the quieter of the two is
kept; a `!` marks one that stayed skewed). The targets of the serving work are checked at the
end, each PASS or MISS.

Results go to `--out` (default benchmarks/results/): serving.json (every number, the settings and
the exact commands), serving.md (the tables and targets) and serving.png (rows/s and p50 latency
per configuration and concurrency, log scale). Every server is stopped at the end, on errors, on
Ctrl-C and on SIGTERM; their logs stay in `--workdir`/run/. `--self-check` checks the parsing of
the load generators' output and the ratio and target arithmetic, without running anything.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import orjson
import requests

from benchmarks.common import DEFAULT_WORKDIR, REPO_ROOT, environment, render_table

BENCH_DIR = Path(__file__).resolve().parent
MLFLOW_VENV = BENCH_DIR / ".mlflow-venv"
MLFLOW_REQUIREMENT = "mlflow>=3,<4"
DEFAULT_OUT = BENCH_DIR / "results"
MODELS = ("dense", "image")
MODEL_TITLES = {"dense": "dense 784->256->10", "image": "MobileNetV2 224x224x3"}
FORMATS = {"dense": ("json",), "image": ("json", "binary")}

IN_B1, IN_BATCH = "in-process, batch 1", "in-process, batch 32"
IN_THREADS = "in-process, batch 1, threads"
BARE, MLFLOW = "bare Flask", "MLflow"
MH_OFF, MH_ON = "modelhub, batching off", "modelhub, batching on"
GENERATORS = ("wrk", "hey")

HEY_TIMEOUT_S = 120           # per request; MLflow with a 1.6 MB JSON image at 32 is that slow
SERVER_START_TIMEOUT_S = 240  # MLflow imports TensorFlow and mlflow before it answers
SERVER_STOP_TIMEOUT_S = 40    # above gunicorn's graceful timeout (30 s)
#: "far ahead of MLflow": at least this many times MLflow's rows/s, and a lower p50
FAR_AHEAD = 2.0
#: other processes using more than BUSY_CPUS cores during a measurement skew it: it is taken
#: again, after waiting (up to --quiet-wait seconds) for them to use less than QUIET_CPUS
BUSY_CPUS, QUIET_CPUS = 0.25, 0.1
#: fewer answers than this in a measurement and it is taken again, longer
MIN_ANSWERS = 20


# --- processes ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@dataclass
class Server:
    label: str
    url: str
    process: subprocess.Popen
    command: list[str]
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def server(label: str, command: list[str], port: int, log_path: Path, ready: Callable[[str], bool],
           env: dict | None = None) -> Iterator[Server]:
    """`command` in its own session (so Ctrl-C reaches it only through this cleanup, and its whole
    process group can be stopped: gunicorn's workers, MLflow's uvicorn), until the block exits.
    It is ready when `ready(url)` is true."""
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
    srv = Server(label, url, process, command, log_path)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{label} exited with {process.returncode}:\n{srv.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if ready(url):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label} was not ready after {SERVER_START_TIMEOUT_S} s:\n"
                                   f"{srv.log_tail()}")
            time.sleep(0.2)
        print(f"  ready after {time.monotonic() - deadline + SERVER_START_TIMEOUT_S:.1f} s",
              flush=True)
        yield srv
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not skip this
    try:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group, if any
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def gunicorn_args_of(pid: int) -> list[str] | None:
    """The options a running `modelhub serve` gave gunicorn (the CLI execs it, so they are that
    process's command line), without --bind and the app; None if they cannot be read."""
    try:
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return None
    if "gunicorn" not in argv or len(argv) < 3:
        return None  # not exec'd yet, or the title was rewritten (setproctitle)
    options = argv[argv.index("gunicorn") + 1:-1]
    if "--bind" in options:
        i = options.index("--bind")
        del options[i:i + 2]
    return options


def gunicorn_args(workers: int, threads: int) -> list[str]:
    """What `modelhub serve` gives gunicorn (hub/cli.py), for when no modelhub server ran to read
    them from (see gunicorn_args_of)."""
    return ["--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
            "--timeout", "120", "--graceful-timeout", "30",
            "--limit-request-field_size", "65536",
            "--access-logfile", "-", "--error-logfile", "-", "--no-control-socket"]


def source_version() -> dict:
    """The commit of this checkout and the files changed since (what the numbers belong to)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=False)
        return done.stdout if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD").strip() or None,
            "changed": [line[3:] for line in git("status", "--porcelain").splitlines()]}


def modelhub_command() -> list[str]:
    script = Path(sys.executable).parent / "modelhub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "hub.cli"]


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and every process below it, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, times = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:
        ticks = [int(n) for n in f.readline().split()[1:]]
    return sum(ticks[i] for i in (0, 1, 2, 5, 6)) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def children_cpu_seconds() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


# --- load generators ------------------------------------------------------------------------------

@dataclass
class Request:
    """One kind of request: where it goes and the body file hey sends."""
    model: str
    fmt: str
    path: str
    body: Path
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def parse_hey(text: str) -> dict:
    """hey's summary: total seconds, latency percentiles (ms), status counts, transport errors."""
    total = re.search(r"Total:\s+([\d.]+) secs", text)
    if not total:
        raise ValueError(f"not a hey summary:\n{text[-2000:]}")
    percentiles = {int(p): float(s) * 1000
                   for p, s in re.findall(r"^\s+(\d+)%+ in ([\d.]+) secs", text, re.M)}
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", text)}
    transport = 0
    if "Error distribution:" in text:
        for line in text.split("Error distribution:", 1)[1].splitlines():
            match = re.match(r"\s+\[(\d+)\]\s", line)
            if match:
                transport += int(match.group(1))
    average = re.search(r"Average:\s+([\d.]+) secs", text)
    return {"seconds": float(total.group(1)), "p50_ms": percentiles.get(50),
            "p99_ms": percentiles.get(99),
            "mean_ms": float(average.group(1)) * 1000 if average else None,
            "status_codes": statuses, "transport_errors": transport}


def _wrk_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(text: str) -> dict:
    """wrk --latency's summary, in the shape of parse_hey's."""
    match = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    if not match:
        raise ValueError(f"not a wrk summary:\n{text[-2000:]}")
    count = int(match.group(1))
    seconds = _wrk_ms(match.group(2) + match.group(3)) / 1000
    percentiles = {int(p): _wrk_ms(v)
                   for p, v in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", text, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    bad = int(bad.group(1)) if bad else 0
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        text)
    transport = sum(map(int, sockets.groups())) if sockets else 0
    average = re.search(r"^\s+Latency\s+([\d.]+\w+)", text, re.M)
    return {"seconds": seconds, "p50_ms": percentiles.get(50), "p99_ms": percentiles.get(99),
            "mean_ms": _wrk_ms(average.group(1)) if average else None,
            "status_codes": {200: count - bad, **({"non-2xx": bad} if bad else {})},
            "transport_errors": transport}


def hey_command(url: str, req: Request, concurrency: int, seconds: float) -> list[str]:
    command = ["hey", "-z", f"{seconds:g}s", "-c", str(concurrency), "-t", str(HEY_TIMEOUT_S),
               "-m", "POST", "-T", req.content_type, "-D", str(req.body)]
    for key, value in req.headers.items():
        command += ["-H", f"{key}: {value}"]
    return command + [url]


def wrk_command(url: str, req: Request, concurrency: int, seconds: float) -> list[str]:
    """wrk with one thread (plenty for these rates) and a script that sends the body file."""
    script = req.body.with_suffix(req.body.suffix + ".lua")
    lines = ['wrk.method = "POST"', f'wrk.headers["Content-Type"] = "{req.content_type}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in req.headers.items()]
    lines.append(f'local f = io.open("{req.body}", "rb"); wrk.body = f:read("*a"); f:close()')
    script.write_text("\n".join(lines) + "\n")
    return ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{max(1, round(seconds))}s",
            "--timeout", f"{HEY_TIMEOUT_S}s", "--latency", "-s", str(script), url]


def load_command(generator: str, url: str, req: Request, concurrency: int,
                 seconds: float) -> tuple[list[str], Callable[[str], dict]]:
    if generator == "wrk":
        return wrk_command(url, req, concurrency, seconds), parse_wrk
    return hey_command(url, req, concurrency, seconds), parse_hey


def run_load(command: list[str], parse: Callable[[str], dict], server_pid: int) -> dict:
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
        "other_cpus": max(0.0, other) / wall, "wall_s": wall,
    })
    return result


def cpu_use_now(server_pid: int | None, seconds: float = 0.5) -> tuple[float, float]:
    """Cores used over `seconds` by processes other than this one and the server, and by the
    server."""
    def server_cpu():
        return 0.0 if server_pid is None else tree_cpu_seconds(server_pid)

    busy, own, srv = machine_busy_seconds(), own_cpu_seconds(), server_cpu()
    time.sleep(seconds)
    srv = server_cpu() - srv
    other = (machine_busy_seconds() - busy) - srv - (own_cpu_seconds() - own)
    return max(0.0, other) / seconds, srv / seconds


def wait_for_quiet(server_pid: int | None, limit: float) -> float:
    """Wait (at most `limit` seconds) until the rest of the machine is idle, and the server too
    (wrk leaves the requests in flight at its deadline behind, and a slow server works on);
    the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        other, srv = cpu_use_now(server_pid)
        if other <= QUIET_CPUS and srv <= QUIET_CPUS:
            break
    return time.monotonic() - started


# --- requests and their answers -------------------------------------------------------------------

def write_bodies(models_dir: Path, bodies: Path,
                 metas: dict[str, dict]) -> dict[str, dict[str, Request]]:
    """Request bodies for every model and format: TF Serving JSON, V2 binary, MLflow JSON."""
    bodies.mkdir(parents=True, exist_ok=True)
    requests_ = {}
    for model, meta in metas.items():
        row = np.load(models_dir / model / "input.npy")
        instances = orjson.dumps({"instances": row}, option=orjson.OPT_SERIALIZE_NUMPY)
        (bodies / f"{model}.json").write_bytes(instances)
        data = row.astype("<f4").tobytes()
        header = orjson.dumps({
            "inputs": [{"name": meta["input"]["name"], "shape": list(row.shape),
                        "datatype": "FP32", "parameters": {"binary_data_size": len(data)}}],
            "outputs": [{"name": meta["output"]["name"], "parameters": {"binary_data": True}}]})
        (bodies / f"{model}.bin").write_bytes(header + data)
        requests_[model] = {
            "json": Request(model, "json", f"/v1/models/{model}:predict", bodies / f"{model}.json",
                            "application/json"),
            "binary": Request(model, "binary", f"/v2/models/{model}/infer", bodies / f"{model}.bin",
                              "application/octet-stream",
                              {"Inference-Header-Content-Length": str(len(header))}),
            "mlflow": Request(model, "json", "/invocations", bodies / f"{model}.json",
                              "application/json"),
        }
    return requests_


def answer_array(response: requests.Response, req: Request) -> np.ndarray:
    """The prediction in an answer, as float32 [rows, outputs]."""
    if req.fmt == "binary":
        length = int(response.headers["Inference-Header-Content-Length"])
        header = orjson.loads(response.content[:length])
        (out,) = header["outputs"]
        return np.frombuffer(response.content[length:], dtype="<f4").reshape(out["shape"])
    body = orjson.loads(response.content)
    if "predictions" in body:
        values = body["predictions"]
    elif "outputs" in body:
        values = body["outputs"]
    else:
        raise ValueError(f"no predictions in {str(body)[:200]}")
    if isinstance(values, dict):  # MLflow with named outputs
        (values,) = values.values()
    return np.asarray(values, dtype=np.float32)


def check_answer(srv: Server, req: Request, reference: np.ndarray, compare: bool,
                 times: int = 1) -> None:
    """`times` requests, each on a new connection (so that with several workers each is likely
    to be asked): 200 and (unless `compare` is false: bare Flask) TensorFlow's prediction.
    A 503 (a worker still loading the model) is asked again, for up to SERVER_START_TIMEOUT_S."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    body = req.body.read_bytes()
    for _ in range(times):
        while True:
            response = requests.post(srv.url + req.path, data=body, timeout=HEY_TIMEOUT_S,
                                     headers={"Content-Type": req.content_type, **req.headers})
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        _check_response(srv, req, reference, compare, response)


def _check_response(srv: Server, req: Request, reference: np.ndarray, compare: bool,
                    response: requests.Response) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"{srv.label}, {req.model} {req.fmt}: HTTP {response.status_code}: "
                           f"{response.text[:500]}")
    got = answer_array(response, req)
    if got.shape != reference.shape:
        raise RuntimeError(f"{srv.label}, {req.model} {req.fmt}: answer of shape {got.shape}, "
                           f"expected {reference.shape}")
    if compare and not np.allclose(got, reference, rtol=1e-3, atol=1e-5):
        worst = np.abs(got - reference).max()
        raise RuntimeError(f"{srv.label}, {req.model} {req.fmt}: the prediction differs from "
                           f"TensorFlow's in-process one by up to {worst:g}")


# --- the runs -------------------------------------------------------------------------------------

@dataclass
class Plan:
    durations: dict[str, float]
    warmup: float
    concurrency: dict[str, list[int]]
    quiet_wait: float  # 0: neither wait for a quiet machine nor measure again
    generator: str = "wrk"
    max_duration: float = 60.0  # how long a measurement with too few answers may be made


def measure(srv: Server, label: str, reqs: list[Request], plan: Plan, references: dict,
            compare: bool, records: list[dict], generator: str, workers: int = 1) -> None:
    """Check the answers of each request kind, then time each at every concurrency of the plan."""
    for req in reqs:
        check_answer(srv, req, references[req.model], compare, times=4 * workers)
    pid = srv.process.pid
    for req in reqs:
        url = srv.url + req.path
        if plan.warmup > 0:  # first calls, connections, threads: at c=1, untimed
            run_load(*load_command(generator, url, req, 1, plan.warmup), pid)
        for conc in plan.concurrency[req.model]:
            seconds = plan.durations[req.model]
            command, parse = load_command(generator, url, req, conc, seconds)
            waited = wait_for_quiet(pid, plan.quiet_wait)
            result = run_load(command, parse, pid)
            used = generator
            if result["requests"] < MIN_ANSWERS and result["errors"] == 0:
                # A slow server (MLflow with images): too few answers for percentiles, and wrk
                # drops the requests in flight at its deadline. Measure longer, with hey if there
                # is one, which waits for them (at these rates its CPU use does not matter).
                longer = min(plan.max_duration, seconds * max(2, math.ceil(
                    2 * MIN_ANSWERS / max(result["requests"], 1))))
                if longer > seconds:
                    used = "hey" if shutil.which("hey") else generator
                    print(f"  ({result['requests']} answers in {seconds:g} s: measuring for "
                          f"{longer:g} s with {used})", flush=True)
                    seconds = longer
                    waited += wait_for_quiet(pid, plan.max_duration)
                    command, parse = load_command(used, url, req, conc, seconds)
                    result = run_load(command, parse, pid)
            attempts = 1
            if result["other_cpus"] > BUSY_CPUS and plan.quiet_wait > 0:
                print(f"  (other processes took {result['other_cpus']:.2f} cores: measuring again)",
                      flush=True)
                waited += wait_for_quiet(pid, plan.quiet_wait)
                again = run_load(command, parse, pid)
                attempts = 2
                if again["other_cpus"] < result["other_cpus"]:
                    result = again
            result.update(attempts=attempts, waited_for_quiet_s=waited)
            record = {"model": req.model, "config": label, "format": req.fmt,
                      "concurrency": conc, "rows_per_request": 1,
                      "rows_per_s": result["requests_per_s"], "load_generator": used,
                      "command": shlex.join(command), **result}
            records.append(record)
            print(f"  {req.model:5} {req.fmt:6} c={conc:<3} {record['requests_per_s']:9.1f} req/s  "
                  f"p50 {fmt_ms(record['p50_ms'])} ms  p99 {fmt_ms(record['p99_ms'])} ms  "
                  f"errors {record['errors']}  CPU server {record['server_cpus']:.2f} "
                  f"{used} {record['load_generator_cpus']:.2f} "
                  f"other {record['other_cpus']:.2f}", flush=True)


def run_inprocess(models_dir: Path, model: str, seconds: float, warmup: float,
                  quiet_wait: float, threads: int) -> dict:
    """models.py's in-process timing in a child process (measured again, like the servers, when
    other processes took more than BUSY_CPUS meanwhile)."""
    def once() -> dict:
        wait_for_quiet(None, quiet_wait)
        busy, own, kids = machine_busy_seconds(), own_cpu_seconds(), children_cpu_seconds()
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(BENCH_DIR / "models.py"), "inprocess",
                               str(models_dir / model), "--duration", str(seconds),
                               "--warmup", str(warmup), "--batch", "32",
                               "--threads", str(threads)],
                              capture_output=True, text=True, check=False, cwd=REPO_ROOT)
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


def modelhub_ready(models: list[str]) -> Callable[[str], bool]:
    def ready(url: str) -> bool:
        if requests.get(f"{url}/readyz", timeout=5).status_code != 200:
            return False
        for model in models:
            response = requests.get(f"{url}/v1/models/{model}", timeout=5)
            if response.status_code != 200 or not any(
                    s["state"] == "AVAILABLE" for s in response.json()["model_version_status"]):
                return False
        return True
    return ready


def status_ok(path: str) -> Callable[[str], bool]:
    return lambda url: requests.get(url + path, timeout=5).status_code == 200


# --- MLflow ---------------------------------------------------------------------------------------

def tensorflow_version() -> str:
    from importlib.metadata import version

    for dist in ("tensorflow-cpu", "tensorflow"):
        with contextlib.suppress(Exception):
            return version(dist)
    raise RuntimeError("TensorFlow is not installed in this environment")


def ensure_mlflow(install: bool) -> tuple[Path | None, str]:
    """MLflow's environment (created once, then reused): (its bin folder or None, what happened)."""
    tf_dist = _tf_dist_name()
    wanted = f"{MLFLOW_REQUIREMENT} {tf_dist}=={tensorflow_version()}"
    stamp = MLFLOW_VENV / ".installed"
    bin_dir = MLFLOW_VENV / "bin"
    if stamp.is_file() and stamp.read_text().strip() == wanted and (bin_dir / "mlflow").exists():
        return bin_dir, f"reused {MLFLOW_VENV}"
    if (bin_dir / "mlflow").exists() and not stamp.exists():
        # made by hand with the same packages: check what it holds and adopt it
        probe = subprocess.run([str(bin_dir / "python"), "-c",
                                "from importlib.metadata import version as v; "
                                f"print(v('mlflow'), v('{tf_dist}'))"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.split()[1:] == [tensorflow_version()] \
                and probe.stdout.split()[0].startswith("3."):
            stamp.write_text(wanted + "\n")
            return bin_dir, f"reused {MLFLOW_VENV}"
    if not install:
        return None, f"MLflow is not installed in {MLFLOW_VENV}; --quick does not install it"
    print(f"installing MLflow into {MLFLOW_VENV} (once; a few minutes) ...", flush=True)
    shutil.rmtree(MLFLOW_VENV, ignore_errors=True)
    steps = [[sys.executable, "-m", "venv", str(MLFLOW_VENV)],
             [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
             [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", MLFLOW_REQUIREMENT,
              f"{tf_dist}=={tensorflow_version()}"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(MLFLOW_VENV, ignore_errors=True)
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"MLflow could not be installed ({shlex.join(step[:4])} ...: {reason[0]})"
    (MLFLOW_VENV / ".gitignore").write_text("*\n")  # never committed, wherever it is
    stamp.write_text(wanted + "\n")
    return bin_dir, f"installed into {MLFLOW_VENV}"


def _tf_dist_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("tensorflow-cpu")
        return "tensorflow-cpu"
    except PackageNotFoundError:
        return "tensorflow"


def mlflow_model(bin_dir: Path, models_dir: Path, workdir: Path, model: str) -> Path:
    """The Keras model saved as an MLflow model (once; kept in the workdir)."""
    out = workdir / "mlflow-models" / model
    source = models_dir / model / "model.keras"
    stamp = out / ".source-mtime"
    if stamp.is_file() and stamp.read_text() == str(source.stat().st_mtime_ns):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(bin_dir / "python"), str(BENCH_DIR / "mlflow_model.py"),
                           str(source), str(out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"saving {model} as an MLflow model failed:\n{done.stderr[-3000:]}")
    stamp.write_text(str(source.stat().st_mtime_ns))
    return out


# --- reporting ------------------------------------------------------------------------------------

def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def fmt_rate(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else (f"{value:.2f}x" if value < 100 else f"{value:.0f}x")


def inprocess_rows(inproc: dict) -> list[dict]:
    rows = []
    for key, r in inproc["results"].items():
        label = {"batch_1": IN_B1, "batch_32": IN_BATCH}.get(key, IN_THREADS)
        rows.append({"model": inproc["model"], "config": label, "format": "-",
                     "concurrency": r.get("threads", 1),
                     "requests_per_s": r["calls_per_s"], "rows_per_s": r["rows_per_s"],
                     "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "errors": 0,
                     "rows_per_request": r["batch"]})
    return rows


def with_ratios(model: str, inproc: dict, records: list[dict]) -> list[dict]:
    b1 = inproc["results"]["batch_1"]
    b32 = inproc["results"]["batch_32"]
    bare = {(r["format"], r["concurrency"]): r for r in records
            if r["model"] == model and r["config"] == BARE}
    order = [IN_B1, IN_BATCH, IN_THREADS, BARE, *(f"{BARE} ({g})" for g in GENERATORS),
             MH_OFF, MH_ON, MLFLOW]
    served = sorted((r for r in records if r["model"] == model),
                    key=lambda r: order.index(r["config"]) if r["config"] in order else len(order))
    rows = []
    for r in inprocess_rows(inproc) + served:
        base = bare.get((r["format"], r["concurrency"]))
        rows.append({**r,
                     "x_inprocess_b1": r["rows_per_s"] / b1["rows_per_s"],
                     "x_inprocess_batched": r["rows_per_s"] / b32["rows_per_s"],
                     "x_bare": (r["requests_per_s"] / base["requests_per_s"]
                                if base and base["requests_per_s"] else None),
                     "p50_minus_inprocess_ms": (r["p50_ms"] - b1["p50_ms"]
                                                if r["p50_ms"] is not None else None)})
    return rows


TABLE_HEADER = ("configuration", "format", "conc", "req/s", "rows/s", "p50 ms", "p99 ms", "errors",
                "x b1", "x b32", "x bare", "+p50 ms", "CPU srv/gen/other")


def table_cells(r: dict, generator: str) -> tuple[str, ...]:
    """One table row; `*` after req/s: measured with the other load generator (slow server)."""
    cpu = ("-" if "server_cpus" not in r
           else f"{r['server_cpus']:.2f}/{r['load_generator_cpus']:.2f}/{r['other_cpus']:.2f}"
           + ("!" if r["other_cpus"] > BUSY_CPUS else ""))
    delta = r["p50_minus_inprocess_ms"]
    other = r.get("load_generator", generator) != generator and not r["config"].startswith(BARE)
    return (r["config"], r["format"], str(r["concurrency"]),
            fmt_rate(r["requests_per_s"]) + ("*" if other else ""),
            fmt_rate(r["rows_per_s"]), fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]), str(r["errors"]),
            fmt_ratio(r["x_inprocess_b1"]), fmt_ratio(r["x_inprocess_batched"]),
            fmt_ratio(r["x_bare"]), "-" if delta is None else f"{delta:+.2f}", cpu)


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(TABLE_HEADER) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def find(rows: list[dict], config: str, fmt: str, conc: int) -> dict | None:
    for r in rows:
        if r["config"] == config and r["format"] == fmt and r["concurrency"] == conc:
            return r
    return None


def evaluate_targets(tables: dict[str, list[dict]], plan: Plan) -> list[dict]:
    """Every target of the serving work, for each modelhub configuration that was measured."""
    targets = []

    def add(name: str, config: str, value: float | None, threshold: float, passed: bool | None,
            detail: str):
        targets.append({"target": name, "config": config, "value": value, "threshold": threshold,
                        "result": "N/A" if passed is None else ("PASS" if passed else "MISS"),
                        "detail": detail})

    for config in (MH_ON, MH_OFF):
        dense = tables.get("dense")
        if dense:
            top = max(plan.concurrency["dense"])
            r = find(dense, config, "json", top)
            b1 = find(dense, IN_B1, "-", 1)
            bare = find(dense, BARE, "json", top)
            if r:
                ratio = r["rows_per_s"] / b1["rows_per_s"]
                add(f"dense, json, c={top}: rows/s >= 1.0x in-process batch 1", config, ratio, 1.0,
                    ratio >= 1.0 and r["errors"] == 0, f"{fmt_ratio(ratio)}")
                if bare:
                    ratio = r["rows_per_s"] / bare["rows_per_s"]
                    add(f"dense, json, c={top}: req/s >= 0.9x bare Flask", config, ratio, 0.9,
                        ratio >= 0.9 and r["errors"] == 0, f"{fmt_ratio(ratio)}")
        for model, rows in tables.items():
            b1 = find(rows, IN_B1, "-", 1)
            for fmt in FORMATS[model]:
                r = find(rows, config, fmt, 1)
                if r and r["p50_ms"] is not None:
                    delta = r["p50_ms"] - b1["p50_ms"]
                    add(f"{model}, {fmt}, c=1: p50 <= in-process p50 + 1.5 ms", config, delta, 1.5,
                        delta <= 1.5, f"{fmt_ms(r['p50_ms'])} ms vs {fmt_ms(b1['p50_ms'])} ms "
                                      f"({delta:+.2f} ms)")
        image = tables.get("image")
        if image and config == MH_ON:
            top = max(plan.concurrency["image"])
            batched = find(image, IN_BATCH, "-", 1)
            for fmt, threshold in (("binary", 0.9), ("json", 0.5)):
                r = find(image, config, fmt, top)
                if r:
                    ratio = r["rows_per_s"] / batched["rows_per_s"]
                    add(f"image, {fmt}, c={top}: images/s >= {threshold}x in-process batched",
                        config, ratio, threshold, ratio >= threshold and r["errors"] == 0,
                        f"{fmt_ratio(ratio)} ({fmt_rate(r['rows_per_s'])} vs "
                        f"{fmt_rate(batched['rows_per_s'])} images/s)")
        for model, rows in tables.items():
            for fmt in FORMATS[model]:
                for conc in plan.concurrency[model]:
                    r, peer = find(rows, config, fmt, conc), find(rows, MLFLOW, "json", conc)
                    if not r or not peer:
                        continue
                    if not peer["rows_per_s"]:
                        add(f"{model}, {fmt}, c={conc}: >= {FAR_AHEAD:g}x MLflow's rows/s "
                            "and a lower p50", config, None, FAR_AHEAD, None,
                            f"MLflow answered nothing ({peer['errors']} errors)")
                        continue
                    ratio = r["rows_per_s"] / peer["rows_per_s"]
                    # too few answers for hey to give a p50 (MLflow, image): compare means
                    ours, theirs = ((r["p50_ms"], peer["p50_ms"]) if peer["p50_ms"] is not None
                                    else (r.get("mean_ms"), peer.get("mean_ms")))
                    faster = ours is not None and theirs is not None and ours < theirs
                    add(f"{model}, {fmt}, c={conc}: >= {FAR_AHEAD:g}x MLflow's rows/s "
                        "and a lower p50", config, ratio, FAR_AHEAD,
                        ratio >= FAR_AHEAD and faster and r["errors"] == 0,
                        f"{fmt_ratio(ratio)}, {'p50' if peer['p50_ms'] is not None else 'mean'} "
                        f"{fmt_ms(ours)} vs {fmt_ms(theirs)} ms")
    return targets


def plot(tables: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tables), 2, figsize=(15, 4.8 * len(tables)), squeeze=False)
    for (model, rows), (ax_rate, ax_p50) in zip(tables.items(), axes):
        groups = []
        for r in rows:
            key = (r["config"], r["format"])
            if key not in groups:
                groups.append(key)
        concs = sorted({r["concurrency"] for r in rows})
        width = 0.8 / len(concs)
        for i, conc in enumerate(concs):
            rates, p50s = [], []
            for g, (config, fmt) in enumerate(groups):
                r = find(rows, config, fmt, conc)
                if r:
                    x = g + (i - (len(concs) - 1) / 2) * width
                    if r["rows_per_s"] > 0:
                        rates.append((x, r["rows_per_s"]))
                    if r["p50_ms"]:
                        p50s.append((x, r["p50_ms"]))
            color = f"C{i}"
            for ax, points in ((ax_rate, rates), (ax_p50, p50s)):
                ax.bar([x for x, _ in points], [v for _, v in points], width, color=color,
                       label=f"concurrency {conc}")
        labels = [config.replace(", ", "\n") + ("" if fmt == "-" else f"\n{fmt}")
                  for config, fmt in groups]
        for ax, title in ((ax_rate, "rows/s (log)"), (ax_p50, "p50 latency, ms (log)")):
            ax.set_yscale("log")
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_title(f"{MODEL_TITLES[model]}: {title}")
            ax.grid(axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- self-check -----------------------------------------------------------------------------------

#: Summaries as hey 0.1.4 and wrk 4.1 print them (shortened), with the values they must give.
_HEY_SAMPLE = """
Summary:
  Total:\t10.0031 secs
  Slowest:\t0.0406 secs
  Fastest:\t0.0006 secs
  Average:\t0.0118 secs
  Requests/sec:\t2706.5422

Latency distribution:
  10% in 0.0082 secs
  50% in 0.0113 secs
  99% in 0.0250 secs
  0% in 0.0000 secs

Status code distribution:
  [200]\t27000 responses
  [503]\t70 responses

Error distribution:
  [3]\tPost "http://127.0.0.1:1/v1/models/dense:predict": context deadline exceeded
"""
_HEY_EXPECTED = {"seconds": 10.0031, "p50_ms": 11.3, "p99_ms": 25.0, "mean_ms": 11.8,
                 "status_codes": {200: 27000, 503: 70}, "transport_errors": 3}
_WRK_SAMPLE = """
Running 10s test @ http://127.0.0.1:1/v1/models/dense:predict
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.47ms    2.06ms 119.17ms   85.96%
    Req/Sec     2.56k   210.70     3.41k    90.00%
  Latency Distribution
     50%  850.00us
     75%    3.28ms
     90%    4.99ms
     99%    1.08s
  25600 requests in 10.01s, 4.65MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 100
Requests/sec:   2557.44
"""
_WRK_EXPECTED = {"seconds": 10.01, "p50_ms": 0.85, "p99_ms": 1080.0, "mean_ms": 12.47,
                 "status_codes": {200: 25500, "non-2xx": 100}, "transport_errors": 3}


def self_check() -> None:
    """The pure parts, without servers: hey's and wrk's summaries and the ratios."""
    for parse, sample, expected in ((parse_hey, _HEY_SAMPLE, _HEY_EXPECTED),
                                    (parse_wrk, _WRK_SAMPLE, _WRK_EXPECTED)):
        got = parse(sample)
        for key, value in expected.items():
            ok = (got[key] == value if not isinstance(value, float)
                  else got[key] is not None and abs(got[key] - value) < 1e-6)
            if not ok:
                raise SystemExit(f"{parse.__name__}: {key} is {got[key]!r}, expected {value!r}")
    failed = parse_hey(_HEY_SAMPLE.split("Latency distribution")[0].replace("0.0118", "NaN"))
    assert failed["mean_ms"] is None and failed["p50_ms"] is None, failed
    inproc = {"model": "dense", "results": {
        "batch_1": {"batch": 1, "calls_per_s": 1000.0, "rows_per_s": 1000.0, "p50_ms": 1.0,
                    "p99_ms": 2.0},
        "batch_32": {"batch": 32, "calls_per_s": 100.0, "rows_per_s": 3200.0, "p50_ms": 10.0,
                     "p99_ms": 20.0}}}
    served = [{"model": "dense", "config": c, "format": "json", "concurrency": 32,
               "requests_per_s": rate, "rows_per_s": rate, "p50_ms": p50, "p99_ms": p50,
               "mean_ms": p50, "errors": 0}
              for c, rate, p50 in ((BARE, 800.0, 5.0), (MH_ON, 1600.0, 4.0), (MLFLOW, 16.0, 900.0))]
    rows = with_ratios("dense", inproc, served)
    on = find(rows, MH_ON, "json", 32)
    assert (on["x_inprocess_b1"], on["x_inprocess_batched"], on["x_bare"]) == (1.6, 0.5, 2.0), on
    assert on["p50_minus_inprocess_ms"] == 3.0, on
    plan = Plan({"dense": 1, "image": 1}, 0, {"dense": [32], "image": [32]}, 0)
    results = {t["target"]: t["result"] for t in evaluate_targets({"dense": rows}, plan)
               if t["config"] == MH_ON}
    assert results == {"dense, json, c=32: rows/s >= 1.0x in-process batch 1": "PASS",
                       "dense, json, c=32: req/s >= 0.9x bare Flask": "PASS",
                       "dense, json, c=32: >= 2x MLflow's rows/s and a lower p50": "PASS"}, results
    print("self-check passed: hey and wrk summaries, ratios, targets")


# --- main -----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--self-check", action="store_true",
                        help="check the parsing of hey's and wrk's output and the ratios, "
                             "without running anything, and exit")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 s per measurement, no wrk, MLflow only if already "
                             "installed")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds per timed measurement (default 10; --quick: 2)")
    parser.add_argument("--image-duration", type=float, default=None,
                        help="seconds per timed measurement of the image model (default: "
                             "--duration)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="untimed seconds of load at concurrency 1 before a server's "
                             "measurements of each request (default 2; --quick: 0.5)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="seconds to wait, at most, for other processes to leave the CPUs "
                             "before each measurement; a measurement they disturbed anyway is "
                             "taken again (default 20; --quick: 0, which turns both off)")
    parser.add_argument("--concurrency", default="1,32",
                        help="client concurrencies for the dense model (default 1,32)")
    parser.add_argument("--image-concurrency", default=None,
                        help="client concurrencies for the image model (default: --concurrency)")
    parser.add_argument("--models", default=",".join(MODELS), help="dense, image or both")
    parser.add_argument("--workers", type=int, default=1,
                        help="gunicorn workers, for modelhub and bare Flask alike, and "
                             "MLflow's uvicorn workers (default 1)")
    parser.add_argument("--threads", type=int, default=32,
                        help="gunicorn threads per worker, for both (default 32)")
    parser.add_argument("--batch-args", default="",
                        help="more `modelhub serve` options for the batching-on server, e.g. "
                             "'--max-batch-size 32 --batch-timeout-micros 500'")
    parser.add_argument("--skip", default="",
                        help="configurations to leave out: bare, off, on, mlflow (comma-separated)")
    parser.add_argument("--no-mlflow", action="store_true", help="leave MLflow out")
    parser.add_argument("--generator", choices=GENERATORS, default="wrk",
                        help="the load generator (default wrk: on 2 cores hey takes several "
                             "times its CPU, and that CPU from the server)")
    parser.add_argument("--cross-check", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure bare Flask (dense) with the other load generator "
                             "(default: on, off with --quick)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "serving",
                        help="where the models are built (and reused) and the store, bodies and "
                             "logs go (default /tmp/modelhub-bench/serving)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where serving.json, serving.md and serving.png go "
                             "(default benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 2.0 if args.quick else 10.0
    if args.image_duration is None:
        args.image_duration = args.duration
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 20.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 2.0
    if args.cross_check is None:
        args.cross_check = not args.quick
    args.other_generator = next(g for g in GENERATORS if g != args.generator)
    args.models = [m for m in args.models.split(",") if m]
    if not set(args.models) <= set(MODELS) or not args.models:
        parser.error(f"--models: use {' and/or '.join(MODELS)}")
    try:
        dense_conc = [int(c) for c in args.concurrency.split(",")]
        image_conc = [int(c) for c in (args.image_concurrency or args.concurrency).split(",")]
    except ValueError:
        parser.error("concurrencies are comma-separated whole numbers")
    args.conc = {"dense": dense_conc, "image": image_conc}
    args.skip = {s for s in args.skip.split(",") if s}
    if not args.skip <= {"bare", "off", "on", "mlflow"}:
        parser.error("--skip takes bare, off, on and mlflow")
    if args.no_mlflow:
        args.skip.add("mlflow")
    if min(args.duration, args.image_duration) <= 0 or args.workers < 1 or args.threads < 1:
        parser.error("durations, --workers and --threads must be positive")
    args.workdir = args.workdir.absolute()
    args.out = args.out.absolute()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.self_check:
        self_check()
        return
    for tool in (args.generator,) + ((args.other_generator,) if args.cross_check else ()):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    previous_handler = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        run(args)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


class Bench:
    """One run: the models, the in-process limits, then each server in turn, then the report."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.started = time.perf_counter()
        self.command = shlex.join([".venv/bin/python", "benchmarks/serving.py", *sys.argv[1:]])
        self.models_dir = args.workdir / "models"
        self.run_dir = args.workdir / "run"
        self.plan = Plan(durations={"dense": args.duration, "image": args.image_duration},
                         warmup=args.warmup, concurrency=args.conc, quiet_wait=args.quiet_wait,
                         generator=args.generator, max_duration=20.0 if args.quick else 60.0)
        self.gunicorn = gunicorn_args(args.workers, args.threads)
        self.gunicorn_source = "copied from hub/cli.py (no modelhub server ran)"
        self.records: list[dict] = []
        self.servers: dict[str, str] = {}
        self.inproc: dict[str, dict] = {}
        self.mlflow_note = "left out (--no-mlflow / --skip mlflow)"
        self.bare_parser = None

    def prepare(self) -> None:
        args = self.args
        print(f"reproduce: cd {REPO_ROOT} && {self.command}", flush=True)
        print(f"models in {self.models_dir} (built once) ...", flush=True)
        done = subprocess.run([sys.executable, str(BENCH_DIR / "models.py"), "build",
                               str(self.models_dir), "--models", ",".join(args.models)],
                              cwd=REPO_ROOT, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building the models failed:\n{done.stderr[-3000:]}")
        self.metas = {m: json.loads((self.models_dir / m / "meta.json").read_text())
                      for m in args.models}
        self.references = {m: np.load(self.models_dir / m / "reference.npy") for m in args.models}
        self.env = environment(args.workdir)
        self.source = source_version()
        print("; ".join(f"{k} {v}" for k, v in self.env.items()), flush=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.reqs = write_bodies(self.models_dir, self.run_dir / "bodies", self.metas)

    def in_process(self) -> None:
        for model in self.args.models:
            print(f"in-process TensorFlow, {model} ...", flush=True)
            self.inproc[model] = run_inprocess(self.models_dir, model, self.plan.durations[model],
                                               self.plan.warmup, self.plan.quiet_wait,
                                               max(self.plan.concurrency[model]))
            for key, r in self.inproc[model]["results"].items():
                print(f"  {model:5} {key:8} {r['calls_per_s']:9.1f} calls/s "
                      f"{r['rows_per_s']:9.1f} rows/s  p50 {fmt_ms(r['p50_ms'])} ms  "
                      f"p99 {fmt_ms(r['p99_ms'])} ms", flush=True)

    def _timed(self, label: str, key: str, command: list[str], port: int,
               ready: Callable[[str], bool], env: dict, reqs: list[Request], compare: bool,
               extra: Callable[[Server], None] | None = None) -> None:
        print(f"{label}: {shlex.join(command)}", flush=True)
        with server(label, command, port, self.run_dir / f"{key}.log", ready, env) as srv:
            self.servers[key] = shlex.join(command)
            measure(srv, label, reqs, self.plan, self.references, compare, self.records,
                    self.plan.generator, self.args.workers)
            if extra:
                extra(srv)

    def _json_and_binary(self) -> list[Request]:
        return [self.reqs[m][f] for m in self.args.models for f in FORMATS[m]]

    def bare_flask(self) -> None:
        port = free_port()
        sizes = {m: int(np.prod(self.metas[m]["output"]["shape"][1:])) for m in self.args.models}
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                   *self.gunicorn, "benchmarks.bare_flask:create_app()"]

        def extra(srv: Server) -> None:
            self.bare_parser = requests.get(srv.url + "/parser", timeout=5).json()["parser"]
            if self.args.cross_check and "dense" in self.args.models:
                other = self.args.other_generator
                measure(srv, f"{BARE} ({other})", [self.reqs["dense"]["json"]], self.plan,
                        self.references, False, self.records, other)

        self._timed(BARE, "bare-flask", command, port, status_ok("/healthz"),
                    {"BARE_FLASK_OUTPUTS": json.dumps(sizes)}, self._json_and_binary(), False,
                    extra)

    def modelhub(self, batching: bool) -> None:
        store = self.run_dir / "store"
        if not store.exists():
            for model in self.args.models:
                subprocess.run([*modelhub_command(), "--quiet", "--store", str(store), "publish",
                                str(self.models_dir / model / "saved_model"), "--name", model],
                               check=True, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        key = "modelhub-" + ("on" if batching else "off")
        port = free_port()
        flags = (["--batching", *shlex.split(self.args.batch_args)] if batching
                 else ["--no-batching"])
        command = [*modelhub_command(), "--store", str(store), "serve", "--role", "serving",
                   "--host", "127.0.0.1", "--port", str(port),
                   "--models", ",".join(self.args.models), "--workers", str(self.args.workers),
                   "--threads", str(self.args.threads), *flags]

        def read_gunicorn_options(srv: Server) -> None:  # for bare Flask, measured after
            options = gunicorn_args_of(srv.process.pid)
            if options:
                self.gunicorn = options
                self.gunicorn_source = f"those of the `{key}` server"

        self._timed(MH_ON if batching else MH_OFF, key, command, port,
                    modelhub_ready(self.args.models),
                    {"MODELHUB_SERVING_CACHE": str(self.run_dir / f"cache-{key}")},
                    self._json_and_binary(), True, read_gunicorn_options)

    def mlflow(self) -> None:
        bin_dir, self.mlflow_note = ensure_mlflow(install=not self.args.quick)
        print(f"{MLFLOW}: {self.mlflow_note}", flush=True)
        if bin_dir is None:
            return
        # its uvicorn must be found on PATH
        env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        for model in self.args.models:
            saved = mlflow_model(bin_dir, self.models_dir, self.args.workdir, model)
            port = free_port()
            command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(saved),
                       "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
                       "--workers", str(self.args.workers)]
            self._timed(MLFLOW, f"mlflow-{model}", command, port, status_ok("/ping"), env,
                        [self.reqs[model]["mlflow"]], True)

    def report(self) -> None:
        args, plan = self.args, self.plan
        tables = {m: with_ratios(m, self.inproc[m], self.records) for m in args.models}
        targets = evaluate_targets(tables, plan)
        text_parts, md_parts = [], []
        for model in args.models:
            title = (f"{MODEL_TITLES[model]} ({self.metas[model]['parameters']:,} parameters), "
                     f"one row per request; {args.workers} worker(s) x {args.threads} threads")
            cells = [table_cells(r, plan.generator) for r in tables[model]]
            text_parts.append(f"{title}\n\n{render_table(TABLE_HEADER, cells)}")
            md_parts.append(f"### {title}\n\n{markdown_table(cells)}")
        target_lines = [f"{t['result']:4}  {t['target']} [{t['config']}]: {t['detail']}"
                        for t in targets] or ["(none: their configurations were not measured)"]
        elapsed = time.perf_counter() - self.started
        notes = [f"MLflow: {self.mlflow_note}"]
        if self.bare_parser:
            notes.append(f"bare Flask parses JSON with {self.bare_parser}; its gunicorn options "
                         f"are {self.gunicorn_source}: {shlex.join(self.gunicorn)}")
        notes += [f"load generator: {plan.generator}; * after req/s: fewer than {MIN_ANSWERS} "
                  "answers in the set duration, so measured again for longer with hey, which "
                  "waits for the answers in flight at its deadline (wrk drops them)",
                 "x b1 / x b32: rows/s over in-process batch 1 / batch 32; x bare: req/s over "
                 "bare Flask at the same format and concurrency; +p50: p50 minus in-process "
                 "batch-1 p50; CPU srv/gen/other: cores used by the server / the load generator "
                 f"/ anything else (! above {BUSY_CPUS}: skewed)",
                 f"total run time {elapsed:.0f} s"]
        busy = [r for r in self.records if r["other_cpus"] > BUSY_CPUS]
        busy += [m for m, r in self.inproc.items() if r["other_cpus"] > BUSY_CPUS]
        if busy:
            notes.append(f"warning: other processes used more than {BUSY_CPUS} cores during "
                         f"{len(busy)} of {len(self.records) + len(self.inproc)} measurements; "
                         "those numbers are skewed")
        print("\n" + "\n\n".join(text_parts))
        print("\ntargets:\n" + "\n".join("  " + line for line in target_lines))
        print("\n" + "\n".join(notes))

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "serving.md").write_text(
            f"# Serving benchmark\n\n`{self.command}`\n\n" + "\n\n".join(md_parts)
            + "\n\n### Targets\n\n" + "\n".join(f"- {line}" for line in target_lines)
            + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
        (args.out / "serving.json").write_text(json.dumps({
            "command": self.command, "environment": self.env, "source": self.source,
            "settings": {"workers": args.workers, "threads": args.threads,
                         "durations_s": plan.durations, "warmup_s": plan.warmup,
                         "concurrency": plan.concurrency, "batch_args": args.batch_args,
                         "quiet_wait_s": plan.quiet_wait, "load_generator": plan.generator,
                         "gunicorn": self.gunicorn, "gunicorn_source": self.gunicorn_source,
                         "hey_timeout_s": HEY_TIMEOUT_S},
            "servers": self.servers, "mlflow": self.mlflow_note,
            "bare_flask_json_parser": self.bare_parser, "models": self.metas,
            "inprocess": self.inproc, "tables": tables, "targets": targets,
            "total_run_s": elapsed,
        }, indent=2, default=str) + "\n")
        plot(tables, args.out / "serving.png")
        print(f"results: {args.out / 'serving.json'}, {args.out / 'serving.md'}, "
              f"{args.out / 'serving.png'}")


def run(args: argparse.Namespace) -> None:
    bench = Bench(args)
    bench.prepare()
    bench.in_process()
    if "off" not in args.skip:
        bench.modelhub(batching=False)
    if "on" not in args.skip:
        bench.modelhub(batching=True)
    if "bare" not in args.skip:  # after modelhub, whose gunicorn options it takes
        bench.bare_flask()
    if "mlflow" not in args.skip:
        bench.mlflow()
    bench.report()


if __name__ == "__main__":
    main()
