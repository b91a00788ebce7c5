"""A serving worker's memory under repeated large prediction bodies: does it stay flat?

Rounds of /v1 (JSON) and /v2 (JSON) requests of 26 to 60 MB each, sent to `modelhub serve
--workers 1` serving half_plus_two (every value comes back: answers are as large); after each
round, the worker's resident memory (RSS) is read from /proc. A leak shows as a climb from
round to round; the allocator's and TensorFlow's one-off growth shows in the first rounds only.

    .venv/bin/python benchmarks/memory.py [--rounds 50] [--workdir /tmp/modelhub-bench/memory]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import orjson
import requests

from benchmarks.common import DEFAULT_WORKDIR, render_table
from tests.support.processes import free_port, modelhub_command, server_process

#: Body sizes of a round, in MB (the server's default limit is 64 MiB).
SIZES_MB = (26, 40, 60)


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def bodies() -> list[tuple[str, bytes]]:
    made = []
    sample = np.random.default_rng(0).random(10_000, dtype=np.float32)
    per_value = len(orjson.dumps(sample, option=orjson.OPT_SERIALIZE_NUMPY)) / sample.size
    for megabytes in SIZES_MB:
        count = int(megabytes * 2**20 / per_value)
        values = np.random.default_rng(megabytes).random(count, dtype=np.float32)
        made.append(("/v1/models/half_plus_two:predict",
                     orjson.dumps({"instances": values}, option=orjson.OPT_SERIALIZE_NUMPY)))
        made.append(("/v2/models/half_plus_two/infer", orjson.dumps(
            {"inputs": [{"name": "x", "shape": [count], "datatype": "FP32", "data": values}]},
            option=orjson.OPT_SERIALIZE_NUMPY)))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "memory")
    args = parser.parse_args()
    from hub.examples import build_half_plus_two
    from hub.registry import Registry

    args.workdir.mkdir(parents=True, exist_ok=True)
    store = args.workdir / "store"
    registry = Registry.open(str(store))
    if not registry.model_names():
        with tempfile.TemporaryDirectory() as work:
            registry.publish(build_half_plus_two(Path(work) / "hpt"), "half_plus_two")
    port = free_port()
    command = [*modelhub_command(), "--store", str(store), "serve", "--role", "serving",
               "--port", str(port), "--grpc-port", "0", "--workers", "1", "--device", "cpu"]
    sent = bodies()
    print(f"{len(sent)} bodies per round: "
          + ", ".join(f"{len(b) / 2**20:.0f} MB" for _, b in sent), flush=True)
    samples = []
    with server_process("modelhub", command, port, args.workdir / "server.log",
                        lambda url: requests.get(f"{url}/readyz", timeout=5).ok,
                        env={"MODELHUB_SERVING_CACHE": str(args.workdir / "cache")}) as server:
        pid = server.process.pid
        worker = int(open(f"/proc/{pid}/task/{pid}/children").read().split()[0])
        samples.append(("start", rss_mb(worker)))
        with requests.Session() as session:
            for round_ in range(1, args.rounds + 1):
                started = time.perf_counter()
                for path, body in sent:
                    response = session.post(server.url + path, data=body, timeout=300,
                                            headers={"Content-Type": "application/json"})
                    response.raise_for_status()
                samples.append((str(round_), rss_mb(worker)))
                print(f"round {round_:3}: worker RSS {samples[-1][1]:8.1f} MB "
                      f"({time.perf_counter() - started:.1f} s)", flush=True)
    rss = [mb for _, mb in samples[1:]]
    tail = rss[len(rss) // 5:]  # after the first fifth: the steady state
    slope = np.polyfit(np.arange(len(tail)), tail, 1)[0] if len(tail) > 1 else 0.0
    print()
    print(render_table(("", "worker RSS MB"), [
        ("at start", f"{samples[0][1]:.0f}"), ("after round 1", f"{rss[0]:.0f}"),
        (f"after round {len(rss)}", f"{rss[-1]:.0f}"), ("highest", f"{max(rss):.0f}"),
        ("steady-state slope per round", f"{slope:+.1f}")]))


if __name__ == "__main__":
    main()
