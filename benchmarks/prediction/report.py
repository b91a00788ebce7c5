"""The serving benchmark's report: ratios against the in-process limits and bare Flask, the
tables, the targets of the serving work (each PASS or MISS), and the plot."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .measure import Plan

MODEL_TITLES = {"dense": "dense 784->256->10", "image": "MobileNetV2 224x224x3"}
FORMATS = {"dense": ("json",), "image": ("json", "binary")}
IN_B1, IN_BATCH = "in-process, batch 1", "in-process, batch 32"
IN_THREADS = "in-process, batch 1, threads"
BARE, MLFLOW = "bare Flask", "MLflow"
MH_OFF, MH_ON = "modelhub, batching off", "modelhub, batching on"
GENERATORS = ("wrk", "hey")
#: "far ahead of MLflow": at least this many times MLflow's rows/s, and a lower p50
FAR_AHEAD = 2.0
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
