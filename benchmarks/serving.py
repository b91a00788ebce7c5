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
- `bare Flask`            benchmarks/bare_flask.py under gunicorn with the options `modelhub serve`
                          runs with (`modelhub.server.gunicorn_options`), parsing the same bodies
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
Ctrl-C and on SIGTERM; their logs stay in `--workdir`/run/. The parts live in
`benchmarks/prediction/`; the parsing of the load generators' output and the ratio and target
arithmetic are tested in `tests/benchmarks/`.
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
import requests

from benchmarks.common import DEFAULT_WORKDIR, environment, render_table
from benchmarks.prediction.bodies import Body, write_bodies
from benchmarks.prediction.measure import MIN_ANSWERS, Plan, measure, run_inprocess
from benchmarks.prediction.report import (
    BARE,
    BUSY_CPUS,
    FORMATS,
    GENERATORS,
    MH_OFF,
    MH_ON,
    MLFLOW,
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
    ensure_mlflow,
    mlflow_model,
    modelhub_ready,
    source_version,
    status_ok,
)
from tests.support.loadgen import TIMEOUT_S
from tests.support.processes import REPO, Server, free_port, modelhub_command, server_process

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results"
MODELS = ("dense", "image")


def exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
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
        self.records: list[dict] = []
        self.servers: dict[str, str] = {}
        self.inproc: dict[str, dict] = {}
        self.mlflow_note = "left out (--no-mlflow / --skip mlflow)"
        self.bare_parser = None

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
               ready: Callable[[str], bool], env: dict, reqs: list[Body], compare: bool,
               extra: Callable[[Server], None] | None = None) -> None:
        print(f"{label}: {shlex.join(command)}", flush=True)
        with server_process(label, command, port, self.run_dir / f"{key}.log", ready, env) as srv:
            self.servers[key] = shlex.join(command)
            measure(srv, label, reqs, self.plan, self.references, compare, self.records,
                    self.plan.generator, self.args.workers)
            if extra:
                extra(srv)

    def _json_and_binary(self) -> list[Body]:
        return [self.reqs[m][f] for m in self.args.models for f in FORMATS[m]]

    def bare_flask(self) -> None:
        port = free_port()
        sizes = {m: int(np.prod(self.metas[m]["output"]["shape"][1:])) for m in self.args.models}
        command = [sys.executable, str(BENCH_DIR / "bare_flask.py"), "--port", str(port),
                   "--workers", str(self.args.workers), "--threads", str(self.args.threads)]

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
                               check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        key = "modelhub-" + ("on" if batching else "off")
        port = free_port()
        flags = (["--batching", *shlex.split(self.args.batch_args)] if batching
                 else ["--no-batching"])
        command = [*modelhub_command(), "--store", str(store), "serve", "--role", "serving",
                   "--host", "127.0.0.1", "--port", str(port),
                   "--models", ",".join(self.args.models), "--workers", str(self.args.workers),
                   "--threads", str(self.args.threads), *flags]

        self._timed(MH_ON if batching else MH_OFF, key, command, port,
                    modelhub_ready(self.args.models),
                    {"MODELHUB_SERVING_CACHE": str(self.run_dir / f"cache-{key}")},
                    self._json_and_binary(), True)

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
            notes.append(f"bare Flask parses JSON with {self.bare_parser}, under the gunicorn "
                         "options modelhub serve runs with")
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
                         "request_timeout_s": TIMEOUT_S},
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
    if "bare" not in args.skip:
        bench.bare_flask()
    if "mlflow" not in args.skip:
        bench.mlflow()
    bench.report()


if __name__ == "__main__":
    main()
