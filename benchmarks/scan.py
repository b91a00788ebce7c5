"""How long the graph safety scan takes: the example models, MobileNetV2 and a generated model
with about 1 GB of weights. The scan reads saved_model.pb only, so its time should not depend on
the size of the weights.

    .venv/bin/python benchmarks/scan.py [--large-mb 1024] [--workdir /tmp/modelhub-bench]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DEFAULT_WORKDIR, ensure_model, folder_size, render_table
from hub.savedmodel.scan import default_allowlist, scan_saved_model

REPEAT = 5


def timed_scans(folder: Path) -> tuple[float, object]:
    times, verdict = [], None
    for _ in range(REPEAT):
        started = time.perf_counter()
        verdict = scan_saved_model(folder)
        times.append(time.perf_counter() - started)
    return statistics.median(times), verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args()
    from hub.examples import build_all
    from tests.support.benign import build_mobilenet_v2

    with tempfile.TemporaryDirectory() as work:
        models = dict(build_all(Path(work) / "examples"))
        models["mobilenet_v2"] = build_mobilenet_v2(Path(work) / "mobilenet_v2")
        models[f"large ({args.large_mb} MB)"] = ensure_model(args.workdir, args.large_mb)
        rows = []
        for name, folder in models.items():
            seconds, verdict = timed_scans(folder)
            rows.append((name, f"{folder_size(folder) / 2**20:,.1f}",
                         f"{(folder / 'saved_model.pb').stat().st_size / 1024:,.0f}",
                         f"{verdict.nodes:,}", str(verdict.op_types), f"{seconds * 1000:.1f}",
                         "safe" if verdict.safe else "UNSAFE"))
    print(render_table(("model", "size MB", "saved_model.pb KB", "nodes", "op types",
                        "scan ms (median)", "verdict"), rows))
    print(f"\nallowlist: {len(default_allowlist().allowed)} op types allowed "
          f"(hub/savedmodel/allowlist.toml); median of {REPEAT} scans each")


if __name__ == "__main__":
    main()
