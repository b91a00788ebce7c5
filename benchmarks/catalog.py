"""The catalog on a big registry: 10,000 models x 3 versions on the S3 test server (moto, on
loopback), served by `modelhub serve --role hub`. Measures, after the index is built: the list
page, a search page and the API's search (p50 and p90 of sequential requests), how long the first
build and a restart (from the index's snapshot) take, and how long a version published through
another hub replica takes to show on this one, against the poll interval.

    .venv/bin/python benchmarks/catalog.py [--models 10000] [--versions 3] [--requests 50]
                                           [--poll-seconds 10]

The store is filled by writing manifests straight under their keys (one model's files stored
once, shared by all): publishing 30,000 versions one by one would measure publishing instead.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from benchmarks.common import render_table
from tests.support.processes import (
    free_port,
    modelhub_command,
    server_process,
    start_s3_server,
    stop_process,
)

HTML = {"Accept": "text/html"}
SECRET = "catalog-benchmark-secret-0123456789"


def seed(store_uri: str, models: int, versions: int) -> float:
    """`models` x `versions` manifests under their keys; seconds it took."""
    from hub.examples import build_half_plus_two
    from hub.registry import Registry
    from hub.registry.layout import json_bytes, manifest_key

    registry = Registry.open(store_uri)
    with tempfile.TemporaryDirectory() as work:
        template = registry.manifest(*registry.resolve(
            f"{registry.publish(build_half_plus_two(Path(work) / 'hpt'), 'template')['name']}/1"))
    from schemas.manifest import dump_manifest

    base = dump_manifest(template)
    tags = ("vision", "text", "audio", "tabular")

    def put(i: int) -> None:
        name = f"model-{i:05d}" if i % 10 else f"team-{i % 7}/model-{i:05d}"
        for version in range(1, versions + 1):
            manifest = copy.deepcopy(base)
            manifest.update(name=name, version=version, publish_id=uuid.uuid4().hex,
                            description=f"Model {i} for {tags[i % 4]}, version {version}",
                            tags={"task": tags[i % 4]})
            registry.store.put_bytes(manifest_key(name, version), json_bytes(manifest))

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(models)))
    return time.perf_counter() - started


def hub(store_uri: str, workdir: Path, label: str, poll: float):
    port = free_port()
    command = [*modelhub_command(), "--store", store_uri, "serve", "--role", "hub",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--poll-seconds", str(poll)]
    return server_process(label, command, port, workdir / f"{label}.log",
                          lambda url: requests.get(f"{url}/readyz", timeout=5).ok,
                          env={"MODELHUB_TOKEN_SECRET": SECRET}, timeout=600)


def wait_for_index(url: str, expected: int, limit: float = 1800) -> float:
    """Seconds until the list page counts `expected` models."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        text = requests.get(f"{url}/", headers=HTML, timeout=600).text
        if f'<span class="count">{expected}</span>' in text:
            return time.perf_counter() - started
        time.sleep(1)
    raise TimeoutError(f"the index of {url} did not reach {expected} models")


def timed(url: str, path: str, count: int, headers: dict | None = None) -> dict:
    session = requests.Session()
    session.get(url + path, headers=headers, timeout=60)  # warm: connections, templates
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url + path, headers=headers, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    times.sort()
    return {"p50_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))],
            "bytes": len(response.content)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--poll-seconds", type=float, default=10.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="modelhub-catalog-bench-"))
    process, endpoint = start_s3_server()
    os.environ.update({"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "MODELHUB_TOKEN_SECRET": SECRET})
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket="catalog")
        store = "s3://catalog/hub"
        print(f"seeding {args.models} models x {args.versions} versions into {endpoint} ...",
              flush=True)
        seeded = seed(store, args.models, args.versions)
        total = args.models + 1  # and the template model
        print(f"  {seeded:.0f} s", flush=True)
        rows, results = [], {"models": total, "versions": args.versions, "seed_s": seeded}
        with hub(store, workdir, "replica-a", args.poll_seconds) as a:
            results["first_build_s"] = wait_for_index(a.url, total)
            print(f"first index build: {results['first_build_s']:.1f} s", flush=True)
            for label, path, headers in (("list page /", "/", HTML),
                                         ("search page /?q=audio", "/?q=audio", HTML),
                                         ("API /api/v1/models?q=team-3", "/api/v1/models?q=team-3",
                                          None)):
                result = timed(a.url, path, args.requests, headers)
                results[label] = result
                rows.append((label, f"{result['p50_ms']:.1f}", f"{result['p90_ms']:.1f}",
                             f"{result['bytes']:,}"))
            with hub(store, workdir, "replica-b", args.poll_seconds) as b:
                results["restart_from_snapshot_s"] = wait_for_index(b.url, total)
                from hub.auth import TokenStore, load_secret
                from hub.examples import build_half_plus_two
                from hub.registry import Registry
                from schemas.settings import load_settings
                from tests.support.archives import tar_gz_of

                registry = Registry.open(store)
                write = TokenStore(registry.store, load_secret(
                    registry.store, load_settings({"store": store}))).create("write")

                body = tar_gz_of(build_half_plus_two(workdir / "new"))
                published = time.perf_counter()
                response = requests.post(f"{b.url}/api/v1/models/brand-new/versions", data=body,
                                         headers={"Authorization": f"Bearer {write}",
                                                  "Content-Type": "application/gzip"},
                                         timeout=120)
                response.raise_for_status()
                while 'href="/models/brand-new"' not in requests.get(
                        f"{a.url}/?q=brand-new", headers=HTML, timeout=60).text:
                    time.sleep(0.2)
                results["other_replica_publish_visible_s"] = time.perf_counter() - published
        print()
        print(render_table(("request (after warm-up)", "p50 ms", "p90 ms", "bytes"), rows))
        print(f"\nmodels: {total:,} x {args.versions} versions on S3 (moto); first index build "
              f"{results['first_build_s']:.1f} s; a restart from the snapshot "
              f"{results['restart_from_snapshot_s']:.1f} s; a version published through "
              f"another replica showed after {results['other_replica_publish_visible_s']:.1f} s "
              f"(poll interval {args.poll_seconds:g} s)")
        (workdir / "catalog.json").write_text(json.dumps(results, indent=1))
        print(f"results: {workdir / 'catalog.json'}")
    finally:
        stop_process(process)


if __name__ == "__main__":
    main()
