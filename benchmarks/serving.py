"""Prediction serving throughput, latency and CPU, against TensorFlow in-process, MLServer,
BentoML and MLflow, all measured in one run on this machine.

    .venv/bin/python benchmarks/serving.py [--quick] [--duration S] [--out DIR] [--device gpu]
                                           [--skip mlserver,bentoml,mlflow,slow] ...   (--help)

Two models, built once into `--workdir` and reused (see benchmarks/models.py):

- `dense`  Keras 784 -> 256 (relu) -> 10 (softmax), 0.2 M parameters: the serving stack
           dominates;
- `image`  keras.applications.MobileNetV2, 224x224x3 (random weights, real architecture):
           the model dominates.

Each is exported with `keras.Model.export` (a SavedModel); every server runs that same SavedModel
with the TensorFlow version modelhub runs, and every request carries one row:

- `in-process, batch 1 / batch 32 / batch 1, threads`: `tf.saved_model.load` and the signature
  called from one thread (one row, then 32), then from as many threads as the highest
  concurrency: the limits the servers are compared with;
- `modelhub`: `modelhub serve --role serving` with no tuning flag (a worker per core, batching on,
  gRPC on) over TF Serving's REST API (`json`), the Open Inference Protocol's JSON (`v2json`) and
  binary tensors (`binary`, image), and TF Serving's gRPC Predict (`grpc`, `tensor_content`);
- `modelhub, with 64 slow clients`: the dense `json` row at the highest concurrency again, while
  64 more connections send their headers a line a second and /healthz is asked every 100 ms,
  compared with the same row measured just before and just after, without them
  (benchmarks/prediction/slowclients.py);
- `MLServer 1.7, adaptive batching / no batching`: `mlserver start` with a small runtime that
  runs the SavedModel (benchmarks/peers/mlserver_runtime.py), V2 JSON; adaptive batching merges up
  to 32 rows and waits at most 1 ms;
- `BentoML 1.4, adaptive batching`: `bentoml serve` (benchmarks/peers/bentoml_service.py),
  `batchable=True`, up to 32 rows;
- `MLflow`: `mlflow models serve --env-manager local` on the same Keras model.
  Each peer is installed by this script into its own environment (benchmarks/.NAME-venv, kept
  between runs), and left out, with a message, when it cannot be installed (and by --quick,
  unless it is installed already).

Load: `wrk -t 1 -c C -d D` (or hey with `--generator hey`) for HTTP/1.1, `h2load -c C -m 1 -D D`
for gRPC (HTTP/2, one stream per connection), keep-alive connections, at concurrency 1 and 32,
after an untimed warm-up at concurrency 1. wrk is the default because the load generator shares
the 2 cores with the server: hey (Go) takes several times its CPU. Servers run one at a time,
each serving both models; before a server is timed, requests of every model and format (on new
connections, so every worker answers some) must get the prediction TensorFlow gives in-process.
Requests per second count 200 answers only (h2load cannot see gRPC status trailers: the answers
are checked before). Requests/s and rows/s are the same for servers (one row per request).

Ratios: `x b1` = rows/s / in-process batch-1 rows/s; `x b32` = rows/s / in-process batch-32
rows/s; `x MLServer` = rows/s / MLServer's with adaptive batching at the same model and
concurrency; `+p50` = p50 - in-process batch-1 p50; `CPU ms/req` = CPU time of all the server's
processes per answered request; `CPU srv/gen/other` = cores the server, the load generator and
everything else used during the timed part. Another workload on a 2-core machine ruins the
numbers, so each measurement first waits (up to `--quiet-wait` s) for the machine to be idle and
one disturbed anyway is taken again (a `!` marks one that stayed skewed). The targets of the
serving work are checked at the end, each PASS or MISS.

`--device gpu` runs the in-process rows and modelhub (`--device gpu`) on the first CUDA GPU;
without one, the run says so and stops (the peers run on the CPU either way).

Results go to `--out` (default benchmarks/results/): serving.json (every number, the settings and
the exact commands), serving.md (the tables and targets) and serving.png. Every server is stopped
at the end, on errors, on Ctrl-C and on SIGTERM; their logs stay in `--workdir`/run/. The parts
live in `benchmarks/prediction/`; the parsing of the load generators' output and the ratio and
target arithmetic are tested in `tests/benchmarks/`.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.common import DEFAULT_WORKDIR, environment, render_table
from benchmarks.prediction.bodies import Body, write_bodies
from benchmarks.prediction.measure import MIN_ANSWERS, ModelData, Plan, measure, run_inprocess
from benchmarks.prediction.report import (
    BENTOML,
    BUSY_CPUS,
    FORMATS,
    GENERATORS,
    MH,
    MH_SLOW,
    MLFLOW,
    MLSERVER_OFF,
    MLSERVER_ON,
    MODEL_TITLES,
    TABLE_HEADER,
    evaluate_targets,
    fmt_ms,
    markdown_table,
    plot,
    table_cells,
    with_ratios,
)
from benchmarks.prediction.servers import (
    BENTOML_ENV,
    MLFLOW_ENV,
    MLSERVER_ENV,
    mlflow_model,
    mlserver_repository,
    modelhub_ready,
    source_version,
    status_ok,
)
from benchmarks.prediction.slowclients import measure_slow_clients
from tests.support.loadgen import TIMEOUT_S
from tests.support.processes import REPO, Server, free_port, modelhub_command, server_process

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results"
MODELS = ("dense", "image")
PEERS = ("mlserver", "bentoml", "mlflow")


def exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 s per measurement, peers only if already installed")
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
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="where in-process TensorFlow and modelhub run the models")
    parser.add_argument("--modelhub-args", default="",
                        help="`modelhub serve` options to add (default none: its defaults are "
                             "what is measured)")
    parser.add_argument("--skip", default="",
                        help="what to leave out: mlserver, bentoml, mlflow, slow "
                             "(comma-separated)")
    parser.add_argument("--generator", choices=GENERATORS, default="wrk",
                        help="the HTTP/1.1 load generator (default wrk: on 2 cores hey takes "
                             "several times its CPU, and that CPU from the server)")
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
    if not args.skip <= {*PEERS, "slow"}:
        parser.error(f"--skip takes {', '.join(PEERS)} and slow")
    if min(args.duration, args.image_duration) <= 0:
        parser.error("durations must be positive")
    args.workdir = args.workdir.absolute()
    args.out = args.out.absolute()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for tool in (args.generator, "h2load"):
        if not shutil.which(tool):
            package = "nghttp2-client" if tool == "h2load" else tool
            raise SystemExit(f"{tool} is not installed (apt-get install {package})")
    if args.device == "gpu" and not gpu_present():
        raise SystemExit("--device gpu: no CUDA GPU is visible here (nvidia-smi lists none); "
                         "run the same command on a machine with one")
    previous_handler = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        run(args)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def gpu_present() -> bool:
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return False
    return done.returncode == 0 and "GPU" in done.stdout


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
        self.records: list[dict] = []
        self.servers: dict[str, str] = {}
        self.inproc: dict[str, dict] = {}
        self.notes: dict[str, str] = {}
        self.slow: dict | None = None

    def prepare(self) -> None:
        args = self.args
        print(f"reproduce: cd {REPO} && {self.command}", flush=True)
        print(f"models in {self.models_dir} (built once) ...", flush=True)
        done = subprocess.run([sys.executable, str(BENCH_DIR / "models.py"), "build",
                               str(self.models_dir), "--models", ",".join(args.models)],
                              cwd=REPO, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building the models failed:\n{done.stderr[-3000:]}")
        self.metas = {m: json.loads((self.models_dir / m / "meta.json").read_text())
                      for m in args.models}
        self.data = {m: ModelData(self.metas[m], np.load(self.models_dir / m / "input.npy"),
                                  np.load(self.models_dir / m / "reference.npy"))
                     for m in args.models}
        self.env = environment(args.workdir)
        self.source = source_version()
        print("; ".join(f"{k} {v}" for k, v in self.env.items()), flush=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        self.reqs = write_bodies(self.models_dir, self.run_dir / "bodies", self.metas)

    def in_process(self) -> None:
        for model in self.args.models:
            print(f"in-process TensorFlow ({self.args.device}), {model} ...", flush=True)
            self.inproc[model] = run_inprocess(self.models_dir, model, self.plan.durations[model],
                                               self.plan.warmup, self.plan.quiet_wait,
                                               max(self.plan.concurrency[model]),
                                               self.args.device)
            for key, r in self.inproc[model]["results"].items():
                print(f"  {model:5} {key:8} {r['calls_per_s']:9.1f} calls/s "
                      f"{r['rows_per_s']:9.1f} rows/s  p50 {fmt_ms(r['p50_ms'])} ms  "
                      f"p99 {fmt_ms(r['p99_ms'])} ms", flush=True)

    def _timed(self, label: str, key: str, command: list[str], port: int,
               ready: Callable[[str], bool], env: dict, bodies: list[Body],
               grpc_port: int = 0, extra: Callable[[Server], None] | None = None,
               cwd: Path = REPO) -> None:
        print(f"{label}: {shlex.join(command)}", flush=True)
        with server_process(label, command, port, self.run_dir / f"{key}.log", ready, env,
                            cwd=cwd, grpc_port=grpc_port) as srv:
            self.servers[key] = shlex.join(command)
            measure(srv, label, bodies, self.plan, self.data, self.records,
                    workers=os.cpu_count() or 1)
            if extra:
                extra(srv)

    # --- modelhub ---------------------------------------------------------------------------

    def modelhub(self) -> None:
        store = self.run_dir / "store"
        for model in self.args.models:
            subprocess.run([*modelhub_command(), "--quiet", "--store", str(store), "publish",
                            str(self.models_dir / model / "saved_model"), "--name", model],
                           check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        port, grpc_port = free_port(), free_port()
        command = [*modelhub_command(), "--store", str(store), "serve", "--role", "serving",
                   "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port),
                   "--models", ",".join(self.args.models),
                   *(["--device", "gpu"] if self.args.device == "gpu" else []),
                   *shlex.split(self.args.modelhub_args)]
        bodies = [self.reqs[m][f] for m in self.args.models for f in FORMATS[m]]

        def slow_clients(srv: Server) -> None:
            if "slow" in self.args.skip or "dense" not in self.args.models:
                return
            top = max(self.plan.concurrency["dense"])
            print(f"{MH_SLOW}: dense json c={top}, alone, with them, alone again ...", flush=True)
            self.slow = measure_slow_clients(srv, self.reqs["dense"]["json"], self.plan, top)
            print(f"  {self.slow['loaded_rps']:.1f} req/s (alone: "
                  f"{self.slow['unloaded_before_rps']:.1f} before, "
                  f"{self.slow['unloaded_after_rps']:.1f} after), errors {self.slow['errors']}, /healthz "
                  f"slowest {fmt_ms(self.slow['healthz_max_ms'])} ms of "
                  f"{self.slow['healthz_checks']}", flush=True)
            self.records.append({
                "model": "dense", "config": MH_SLOW, "format": "json", "concurrency": top,
                "requests_per_s": self.slow["loaded_rps"], "rows_per_s": self.slow["loaded_rps"],
                "p50_ms": self.slow["p50_ms"], "p99_ms": self.slow["p99_ms"],
                "errors": self.slow["errors"], "rows_per_request": 1})

        self._timed(MH, "modelhub", command, port, modelhub_ready(self.args.models),
                    {"MODELHUB_SERVING_CACHE": str(self.run_dir / "cache-modelhub")}, bodies,
                    grpc_port=grpc_port, extra=slow_clients)

    # --- peers --------------------------------------------------------------------------------

    def mlserver(self) -> None:
        bin_dir, self.notes["MLServer"] = MLSERVER_ENV.ensure(install=not self.args.quick)
        print(f"MLServer: {self.notes['MLServer']}", flush=True)
        if bin_dir is None:
            return
        for batching, label in ((True, MLSERVER_ON), (False, MLSERVER_OFF)):
            repository = mlserver_repository(self.args.workdir, self.models_dir, self.args.models,
                                             self.metas, batching)
            port = free_port()
            settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
                        "metrics_port": free_port(), "parallel_workers": 0, "debug": False}
            (repository / "settings.json").write_text(json.dumps(settings))
            command = [str(bin_dir / "mlserver"), "start", str(repository)]
            ready = status_ok("/v2/health/ready")
            self._timed(label, "mlserver-" + ("batching" if batching else "plain"), command,
                        port, ready, {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
                        [self.reqs[m]["v2json"] for m in self.args.models], cwd=repository)

    def bentoml(self) -> None:
        bin_dir, self.notes["BentoML"] = BENTOML_ENV.ensure(install=not self.args.quick)
        print(f"BentoML: {self.notes['BentoML']}", flush=True)
        if bin_dir is None:
            return
        for model in self.args.models:
            port = free_port()
            command = [str(bin_dir / "bentoml"), "serve", "bentoml_service:SavedModel",
                       "--host", "127.0.0.1", "--port", str(port)]
            env = {"BENCH_SAVED_MODEL": str(self.models_dir / model / "saved_model"),
                   "BENCH_OUTPUT": self.metas[model]["output"]["name"],
                   "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(self.run_dir / "bentoml"),
                   "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
            self._timed(BENTOML, f"bentoml-{model}", command, port, status_ok("/readyz"), env,
                        [self.reqs[model]["bentoml"]], cwd=BENCH_DIR / "peers")

    def mlflow(self) -> None:
        bin_dir, self.notes["MLflow"] = MLFLOW_ENV.ensure(install=not self.args.quick)
        print(f"MLflow: {self.notes['MLflow']}", flush=True)
        if bin_dir is None:
            return
        env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}  # its uvicorn, on PATH
        for model in self.args.models:
            saved = mlflow_model(bin_dir, self.models_dir, self.args.workdir, model)
            port = free_port()
            command = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(saved),
                       "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
            self._timed(MLFLOW, f"mlflow-{model}", command, port, status_ok("/ping"), env,
                        [self.reqs[model]["mlflow"]])

    # --- the report ---------------------------------------------------------------------------

    def report(self) -> None:
        args, plan = self.args, self.plan
        tables = {m: with_ratios(m, self.inproc[m], self.records) for m in args.models}
        targets = evaluate_targets(tables, plan, self.slow)
        text_parts, md_parts = [], []
        for model in args.models:
            title = (f"{MODEL_TITLES[model]} ({self.metas[model]['parameters']:,} parameters), "
                     f"one row per request, {args.device}")
            cells = [table_cells(r, plan.generator) for r in tables[model]]
            text_parts.append(f"{title}\n\n{render_table(TABLE_HEADER, cells)}")
            md_parts.append(f"### {title}\n\n{markdown_table(cells)}")
        target_lines = [f"{t['result']:4}  {t['target']}: {t['detail']}" for t in targets] \
            or ["(none: their configurations were not measured)"]
        elapsed = time.perf_counter() - self.started
        notes = [f"{name}: {note}" for name, note in self.notes.items()]
        notes += [f"HTTP/1.1 load: {plan.generator}; gRPC load: h2load; * after req/s: fewer "
                  f"than {MIN_ANSWERS} answers in the set duration, so measured again for longer "
                  "with hey, which waits for the answers in flight at its deadline",
                  "x b1 / x b32: rows/s over in-process batch 1 / batch 32; x MLServer: rows/s "
                  "over MLServer's with adaptive batching; +p50: p50 minus in-process batch-1 "
                  "p50; CPU ms/req: the server's CPU time per answered request; CPU "
                  "srv/gen/other: cores used by the server / the load generator / anything "
                  f"else (! above {BUSY_CPUS}: skewed)",
                  f"total run time {elapsed:.0f} s"]
        busy = [r for r in self.records if r.get("other_cpus", 0) > BUSY_CPUS]
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
            "settings": {"durations_s": plan.durations, "warmup_s": plan.warmup,
                         "concurrency": plan.concurrency, "device": args.device,
                         "modelhub_args": args.modelhub_args, "quiet_wait_s": plan.quiet_wait,
                         "load_generator": plan.generator, "request_timeout_s": TIMEOUT_S},
            "servers": self.servers, "notes": self.notes, "models": self.metas,
            "inprocess": self.inproc, "tables": tables, "slow_clients": self.slow,
            "targets": targets, "total_run_s": elapsed,
        }, indent=2, default=str) + "\n")
        plot(tables, args.out / "serving.png")
        print(f"results: {args.out / 'serving.json'}, {args.out / 'serving.md'}, "
              f"{args.out / 'serving.png'}")


def run(args: argparse.Namespace) -> None:
    bench = Bench(args)
    bench.prepare()
    bench.in_process()
    bench.modelhub()
    for peer in PEERS:
        if peer not in args.skip:
            getattr(bench, peer)()
    bench.report()


if __name__ == "__main__":
    main()
