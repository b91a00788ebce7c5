"""The serving benchmark's report: ratios against the in-process limits and MLServer, the tables,
the targets of the serving work (each PASS or MISS), and the plot."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .measure import Plan

MODEL_TITLES = {"dense": "dense 784->256->10", "image": "MobileNetV2 224x224x3"}
#: What modelhub is measured with, per model.
FORMATS = {"dense": ("json", "v2json", "grpc"), "image": ("binary", "grpc")}
IN_B1, IN_BATCH = "in-process, batch 1", "in-process, batch 32"
IN_THREADS = "in-process, batch 1, threads"
MH = "modelhub"
MH_SLOW = "modelhub, with 64 slow clients"
MLSERVER_ON, MLSERVER_OFF = "MLServer 1.7, adaptive batching", "MLServer 1.7, no batching"
BENTOML = "BentoML 1.4, adaptive batching"
MLFLOW = "MLflow"
ORDER = (IN_B1, IN_BATCH, IN_THREADS, MH, MH_SLOW, MLSERVER_ON, MLSERVER_OFF, BENTOML, MLFLOW)
GENERATORS = ("wrk", "hey")
#: a measurement during which other processes took more cores than this is marked skewed
BUSY_CPUS = 0.25


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
    mlserver = {r["concurrency"]: r for r in records
                if r["model"] == model and r["config"] == MLSERVER_ON}
    served = sorted((r for r in records if r["model"] == model),
                    key=lambda r: ORDER.index(r["config"]) if r["config"] in ORDER else len(ORDER))
    rows = []
    for r in inprocess_rows(inproc) + served:
        peer = mlserver.get(r["concurrency"])
        rows.append({**r,
                     "x_inprocess_b1": r["rows_per_s"] / b1["rows_per_s"],
                     "x_inprocess_batched": r["rows_per_s"] / b32["rows_per_s"],
                     "x_mlserver": (r["rows_per_s"] / peer["rows_per_s"]
                                    if peer and peer["rows_per_s"] and r["config"] != IN_B1
                                    and not r["config"].startswith("in-process") else None),
                     "p50_minus_inprocess_ms": (r["p50_ms"] - b1["p50_ms"]
                                                if r["p50_ms"] is not None else None)})
    return rows


TABLE_HEADER = ("configuration", "format", "conc", "req/s", "rows/s", "p50 ms", "p99 ms", "errors",
                "x b1", "x b32", "x MLServer", "+p50 ms", "CPU ms/req", "CPU srv/gen/other")


def table_cells(r: dict, generator: str) -> tuple[str, ...]:
    """One table row; `*` after req/s: measured with hey instead (a slow server)."""
    cpu = ("-" if "server_cpus" not in r
           else f"{r['server_cpus']:.2f}/{r['load_generator_cpus']:.2f}/{r['other_cpus']:.2f}"
           + ("!" if r["other_cpus"] > BUSY_CPUS else ""))
    delta = r["p50_minus_inprocess_ms"]
    other = r.get("load_generator", generator) not in (generator, "h2load")
    per_request = r.get("server_ms_per_request")
    return (r["config"], r["format"], str(r["concurrency"]),
            fmt_rate(r["requests_per_s"]) + ("*" if other else ""),
            fmt_rate(r["rows_per_s"]), fmt_ms(r["p50_ms"]), fmt_ms(r["p99_ms"]), str(r["errors"]),
            fmt_ratio(r["x_inprocess_b1"]), fmt_ratio(r["x_inprocess_batched"]),
            fmt_ratio(r["x_mlserver"]), "-" if delta is None else f"{delta:+.2f}",
            "-" if per_request is None else f"{per_request:.3f}", cpu)


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


def evaluate_targets(tables: dict[str, list[dict]], plan: Plan,
                     slow: dict | None = None) -> list[dict]:
    """Every target of the serving work whose measurements were made (`slow`: the slow-client
    run, see slowclients.py)."""
    targets = []

    def add(name: str, value: float | None, threshold: float, passed: bool | None, detail: str):
        targets.append({"target": name, "config": MH, "value": value, "threshold": threshold,
                        "result": "N/A" if passed is None else ("PASS" if passed else "MISS"),
                        "detail": detail})

    dense = tables.get("dense")
    if dense:
        top = max(plan.concurrency["dense"])
        b1 = find(dense, IN_B1, "-", 1)
        peer = find(dense, MLSERVER_ON, "v2json", top)
        for fmt, threshold in (("json", 1.0), ("grpc", 1.2)):
            r = find(dense, MH, fmt, top)
            if not r:
                continue
            ratio = r["rows_per_s"] / b1["rows_per_s"]
            add(f"dense, {fmt}, c={top}: rows/s >= {threshold}x in-process batch 1", ratio,
                threshold, ratio >= threshold and r["errors"] == 0,
                f"{fmt_ratio(ratio)} ({fmt_rate(r['rows_per_s'])} vs "
                f"{fmt_rate(b1['rows_per_s'])} rows/s)")
            if peer and peer["rows_per_s"]:
                ratio = r["rows_per_s"] / peer["rows_per_s"]
                add(f"dense, {fmt}, c={top}: >= 2.5x MLServer with adaptive batching", ratio,
                    2.5, ratio >= 2.5 and r["errors"] == 0,
                    f"{fmt_ratio(ratio)} ({fmt_rate(r['rows_per_s'])} vs "
                    f"{fmt_rate(peer['rows_per_s'])} rows/s)")
        v1, v2 = find(dense, MH, "json", top), find(dense, MH, "v2json", top)
        if v1 and v2:
            ratio = v2["rows_per_s"] / v1["rows_per_s"]
            add(f"dense, c={top}: /v2 JSON within 10% of /v1 JSON", ratio, 0.9, ratio >= 0.9,
                f"{fmt_ratio(ratio)}")
        for fmt in ("json", "grpc"):
            r = find(dense, MH, fmt, 1)
            if r and r["p50_ms"] is not None:
                delta = r["p50_ms"] - b1["p50_ms"]
                add(f"dense, {fmt}, c=1: p50 <= in-process p50 + 0.6 ms", delta, 0.6,
                    delta <= 0.6, f"{fmt_ms(r['p50_ms'])} ms vs {fmt_ms(b1['p50_ms'])} ms "
                                  f"({delta:+.2f} ms)")
        r = find(dense, MH, "json", top)
        if r and r.get("server_ms_per_request") is not None:
            cost = r["server_ms_per_request"]
            add(f"dense, json, c={top}: server CPU per request <= 0.35 ms", cost, 0.35,
                cost <= 0.35, f"{cost:.3f} ms")
    image = tables.get("image")
    if image:
        top = max(plan.concurrency["image"])
        batched = find(image, IN_BATCH, "-", 1)
        for fmt in ("binary", "grpc"):
            r = find(image, MH, fmt, top)
            if r:
                ratio = r["rows_per_s"] / batched["rows_per_s"]
                add(f"image, {fmt}, c={top}: images/s >= 1.0x in-process batch 32", ratio, 1.0,
                    ratio >= 1.0 and r["errors"] == 0,
                    f"{fmt_ratio(ratio)} ({fmt_rate(r['rows_per_s'])} vs "
                    f"{fmt_rate(batched['rows_per_s'])} images/s)")
    if slow:
        ratio = slow["loaded_rps"] / slow["unloaded_rps"] if slow["unloaded_rps"] else 0.0
        add("64 slow-header clients: 32 normal clients keep >= 90% of their throughput",
            ratio, 0.9, ratio >= 0.9 and slow["errors"] == 0,
            f"{fmt_ratio(ratio)} ({fmt_rate(slow['loaded_rps'])} vs "
            f"{fmt_rate(slow['unloaded_rps'])} req/s alone, the mean of just before and just "
            f"after, {slow['errors']} errors)")
        add("64 slow-header clients: /healthz answers in < 100 ms", slow["healthz_max_ms"], 100,
            slow["healthz_max_ms"] < 100 and slow["healthz_failures"] == 0,
            f"slowest of {slow['healthz_checks']}: {fmt_ms(slow['healthz_max_ms'])} ms")
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
