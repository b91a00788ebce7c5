"""Publish and pull throughput of a large SavedModel on the LocalStore, relative to `cp -r`.

    .venv/bin/python benchmarks/publish_pull.py [--size-mb 1024] [--repeat 3]
                                                [--workdir /tmp/modelhub-bench] [--json OUT]

What it measures, for one generated SavedModel of `--size-mb` MB of random float32 weights
(`hub.examples.build_large`, built once into `--workdir` and reused by later runs):

- `cp -r`          copying the model folder: the ceiling for moving these bytes between folders.
- `cp -r + sync`   the same followed by `sync -f DST`, so the data reaches the disk. LocalStore
                   fsyncs every file it writes (a published version must survive a crash), plain
                   `cp -r` does not, so publish is shown against both.
- `sha256`         hashing every file once: the floor under publish and pull, which must both
                   hash every byte (the registry's integrity contract). On a CPU whose sha256 is
                   slower than its page-cache copy, it caps both ratios below 1.
- `publish`        `Registry.publish` into a fresh, empty store: copies each file with the kernel
                   (sendfile) while a second thread hashes what landed, fsyncs it, renames it to
                   its digest, writes the manifest.
- `pull`           `Registry.pull` of that version into a fresh folder: a kernel copy with the
                   sha256 of the written bytes computed alongside. Pull does not fsync, so
                   `cp -r` is its like-for-like baseline.
- `archive`        `Registry.archive` streamed into /dev/null: the version as a tar.gz (deflate
                   only if the weights compress; random weights do not), verified as it streams.
                   An extra row for context, not a goal.

The goal is a throughput of at least 0.5x `cp -r` for publish and pull. A ratio is
`cp seconds / operation seconds` on medians, so 0.5x means "takes twice as long as cp -r".

Every repetition uses fresh, empty store and destination folders, removed afterwards. Dirty pages
are flushed (`sync`, untimed) before each timed operation so none pays for another's writeback;
the page cache is not dropped (that needs root), so every run is warm-cache and the rows are
comparable with one another, not with cold-cache numbers. The baselines are measured in the same
run, interleaved with the operations, so the ratios hold on whatever machine runs this.

Also before each timed operation (untimed, unless `--no-prefault`), `size + 256 MB` of memory is
touched and freed. On VMs that hand freed guest memory back to the host (virtio-balloon free page
reporting, e.g. Firecracker), the first touch of a page costs a host fault: 1-3 s per GB, at
random, charged to whichever operation happens to allocate page cache, which swamps the numbers
(`cp -r` of 1 GB measured anywhere from 0.5 s to 4.7 s). Pre-touching gives every operation
already-backed pages, as on bare metal, where this step costs a fraction of a second.

MB means 2**20 bytes throughout, as in `build_large`.
"""
from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from hub.registry import Registry
from storage.hashing import sha256_file

CP = "cp -r"
CP_SYNC = "cp -r + sync"
PUBLISH = "publish"
PULL = "pull"
ARCHIVE = "archive -> /dev/null"
SHA256 = "sha256"
OPERATIONS = (CP, CP_SYNC, SHA256, PUBLISH, PULL, ARCHIVE)


# --- the operations -------------------------------------------------------------------------------

def drain(chunks: Iterator[bytes]) -> int:
    with open(os.devnull, "wb") as sink:
        return sum(sink.write(chunk) for chunk in chunks)


def run_repetition(model: Path, workdir: Path, size: int, prefault_bytes: int) -> dict[str, float]:
    """One timing of every operation, each into fresh folders that are removed afterwards."""
    measure = functools.partial(timed, prefault_bytes=prefault_bytes)
    times = {}
    with scratch(workdir / "copy") as dest:
        times[CP] = measure(lambda: copy_tree(model, dest))
    with scratch(workdir / "copy") as dest:
        times[CP_SYNC] = measure(lambda: copy_tree(model, dest, sync=True))
    times[SHA256] = measure(lambda: [sha256_file(p) for p in model.rglob("*") if p.is_file()])
    with scratch(workdir / "store") as store:
        registry = Registry.open(str(store))
        manifest = {}
        times[PUBLISH] = measure(lambda: manifest.update(registry.publish(model, MODEL_NAME)))
        if manifest["total_size"] != size:
            raise RuntimeError(f"published {manifest['total_size']} bytes, expected {size}")
        with scratch(workdir / "pulled") as dest:
            times[PULL] = measure(lambda: registry.pull(MODEL_REF, dest))
            if folder_size(dest) != size:
                raise RuntimeError(f"pulled {folder_size(dest)} bytes, expected {size}")
        times[ARCHIVE] = measure(lambda: drain(registry.archive(MODEL_REF)[1]))
    return times


# --- reporting ------------------------------------------------------------------------------------

def summarize(runs: list[dict[str, float]], size: int) -> dict[str, dict]:
    """Best, median, MB/s and ratios to both baselines (on medians) for every operation."""
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
            "ratio_to_cp_sync": medians[CP_SYNC] / medians[op],
        }
    return summary


def format_table(summary: dict[str, dict]) -> str:
    header = ("operation", "best s", "median s", "MB/s", "x cp -r", "x cp -r+sync")
    return render_table(header, [
        (op, f"{s['best_s']:.2f}", f"{s['median_s']:.2f}", f"{s['mb_per_s']:.0f}",
         f"{s['ratio_to_cp']:.2f}x", f"{s['ratio_to_cp_sync']:.2f}x")
        for op, s in summary.items()
    ])


# --- main -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    args = parse_transfer_args(__doc__, argv, "the model is built (and reused) and the stores go")
    started = time.perf_counter()
    command = reproduce_command("benchmarks/publish_pull.py", args)
    print(f"reproduce: cd {REPO_ROOT} && {command}")
    model = ensure_model(args.workdir, args.size_mb)
    size = folder_size(model)
    env = environment(args.workdir)
    print(f"model: {model} ({size / MIB:.0f} MB); " + ", ".join(f"{k} {v}" for k, v in env.items()))

    prefault_bytes = 0 if args.no_prefault else size + 256 * MIB
    runs = []
    for rep in range(1, args.repeat + 1):
        runs.append(run_repetition(model, args.workdir, size, prefault_bytes))
        print(f"repetition {rep}/{args.repeat}: "
              + ", ".join(f"{op} {s:.2f}s" for op, s in runs[-1].items()), flush=True)

    summary = summarize(runs, size)
    print(f"\n{args.repeat} repetitions, warm page cache; MB/s and ratios from medians "
          "(ratio = cp seconds / operation seconds; goal >= 0.5x)\n")
    print(format_table(summary))
    elapsed = time.perf_counter() - started
    print(f"\ntotal run time {elapsed:.0f} s")

    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "size_bytes": size, "repeat": args.repeat,
            "prefault_bytes": prefault_bytes, "environment": env, "operations": summary,
            "total_run_s": elapsed,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
