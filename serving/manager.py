"""The model manager: the lifecycle of served versions (see `served` for their states).

A failed load ends at END with its error; other models are unaffected. A
background thread watches the registry: new versions that the model's version policy wants are
loaded, warmed up and made AVAILABLE *before* the versions they replace are unloaded, so requests
never find a model without a servable version during a switch. Registry aliases are TF Serving
version labels and are followed the same way.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable


from hub.auth import LazySecret, allowance_is_genuine
from hub.refs import check_alias, check_name
from hub.savedmodel.scan import Verdict, scan_saved_model
from hub.registry import Registry
from schemas.errors import (
    AliasNotFound,
    ArtifactNotFound,
    InvalidArgument,
    InvalidModel,
    ModelhubError,
    ModelNotFound,
    NotAvailable,
    VersionNotFound,
    UnsafeModel,
    first_line,
)
from schemas.manifest import name_folder
from schemas.serving import BatchingOptions, ModelConfig, load_serving_config
from schemas.settings import Settings

from .batching import Batcher, batchable
from .devices import check_device, resolve_device
from .metrics import ServingMetrics
from .runtimes import TensorFlowRuntime, TFLiteRuntime
from .served import (
    AVAILABLE,
    END,
    EVICTED,
    FAILED,
    LOADING,
    REFUSED,
    RETIRED,
    UNLOADING,
    ServedVersion,
)
from . import warmup

log = logging.getLogger(__name__)


def _model_configs(settings: Settings) -> list[ModelConfig] | None:
    if settings.model_config:
        path = os.path.expanduser(settings.model_config)
        try:
            with open(path, "rb") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"cannot read the serving config {path}: {e}") from e
        return load_serving_config(data, path)
    return [ModelConfig(name) for name in settings.models] or None


#: Cached versions no published version has are removed after this long.
PRUNE_AFTER_SECONDS = 600.0


def content_digest(manifest: dict) -> str:
    """What a version holds, in 16 hex digits: each file's path and sha256, and its folders."""
    digest = hashlib.sha256()
    for entry in sorted(manifest["files"], key=lambda e: e["path"]):
        digest.update(f"{entry['path']}\0{entry['sha256']}\n".encode())
    for folder in manifest.get("folders", []):
        digest.update(f"{folder}/\n".encode())
    return digest.hexdigest()[:16]


class NeedsLoad(Exception):
    """`get(load=False)` found a version that has to load before it can answer."""


class ModelManager:
    def __init__(self, registry: Registry, models: list[ModelConfig] | None, cache_dir: str | Path,
                 *, device: str = "auto", poll_seconds: float = 30.0, memory_budget: int = 0,
                 runtime: str = "tensorflow", quantize: str = "dynamic",
                 batching: BatchingOptions | None = None,
                 genuine_allowance: Callable[[dict], bool] = lambda record: False,
                 metrics: ServingMetrics | None = None):
        """`models=None` serves every model in the registry (each with the default policy).
        `genuine_allowance` tells whether an admin's allowance of unsafe ops was signed with the
        server's secret (see `_check_graph`); by default none is trusted. `metrics` hears every
        change of a version's state and every merged call.
        `memory_budget` (bytes, 0 = none) caps the summed size of loaded versions; above it the
        least recently used are unloaded and load again when a request asks for them.
        `device`, `runtime`, `quantize` and `batching` are defaults a model's config overrides."""
        self.registry = registry
        self.configs = {c.name: c for c in models} if models is not None else None
        self.cache_dir = Path(cache_dir)
        self.device = check_device(device)
        self.runtime, self.quantize = runtime, quantize
        self.batching = batching or BatchingOptions()
        self.genuine_allowance = genuine_allowance
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.memory_budget = memory_budget
        self._load_locks: dict[tuple[str, int], threading.Lock] = {}
        self._versions: dict[str, dict[int, ServedVersion]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._initial_models: set[str] = set()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, registry: Registry, settings: Settings,
                      metrics: ServingMetrics | None = None) -> "ModelManager":
        """The manager `modelhub serve` runs: models from the serving config file if there is
        one, else from the list of names; none listed: every model in the registry."""
        return cls(registry, _model_configs(settings), os.path.expanduser(settings.serving_cache),
                   device=settings.device, poll_seconds=settings.poll_seconds,
                   memory_budget=int(settings.memory_budget_mb * 1024 * 1024),
                   runtime=settings.runtime, quantize=settings.tflite_quantize,
                   batching=settings.batching_options,
                   genuine_allowance=functools.partial(allowance_is_genuine,
                                                       LazySecret(registry.store, settings)),
                   metrics=metrics)

    # --- lifecycle ----------------------------------------------------------------------------

    def start_in_background(self) -> None:
        """Load what the configuration asks for, then keep watching the registry, on a thread:
        the server answers (and says it is not ready) while models load."""
        self._thread = threading.Thread(target=self._run, name="model-manager", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.sync()
        except Exception:  # e.g. the store is unreachable: keep trying on the next round
            log.exception("initial model sync failed")
        if self.poll_seconds > 0:
            self._watch()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sync()
            except Exception:  # keep watching; the next round may succeed
                log.exception("model sync failed")

    def _config(self, name: str) -> ModelConfig:
        if self.configs is None:
            return ModelConfig(name)
        return self.configs[name]

    def model_names(self) -> list[str]:
        if self.configs is not None:
            return sorted(self.configs)
        return self.registry.model_names()

    def sync(self) -> None:
        """Bring loaded versions in line with the registry and the policies (one pass)."""
        with self._sync_lock:
            for name in self.model_names():
                try:
                    self._sync_model(name)
                except ModelhubError as e:
                    log.error("cannot sync %s: %s", name, e)
            if not self._synced.is_set():
                with self._lock:
                    self._initial_models = set(self._versions)
        self._synced.set()

    def _sync_model(self, name: str) -> None:
        published = self.registry.versions(name)
        labels = self.registry.aliases(name) if published else {}
        wanted = self._config(name).wanted(published) | (set(labels.values()) & set(published))
        with self._lock:
            self._labels[name] = labels
            current = self._versions.setdefault(name, {})
            now = time.monotonic()
            new = sorted(v for v in wanted if v not in current
                         or current[v].retired  # unloaded before, wanted again
                         or current[v].retry_due(now))
        for version in new:
            previous = current.get(version)
            self._load(name, version, attempts=previous.attempts if previous else 0)
        with self._lock:
            retiring = [sv for v, sv in current.items() if v not in wanted and sv.state == AVAILABLE]
        if retiring and not any(current[v].state == AVAILABLE for v in wanted if v in current):
            return  # nothing new is servable yet: keep the old versions answering
        for served in retiring:
            self._unload(served)
        with self._lock:  # versions deleted from the registry leave the table
            for version in [v for v, sv in current.items()
                            if sv.state == END and v not in published]:
                del current[version]
            keep = {f"{sv.version}-{content_digest(sv.manifest)}" for sv in current.values()
                    if sv.manifest is not None}
        keep |= {f"{v}.artifacts" for v in published}
        if published:
            self._prune_cache(name, keep)

    def _fetch(self, manifest: dict) -> Path:
        """The version's folder in the local cache, pulled (verified) if not there yet.

        Its name carries a digest of the version's content (every file's path and sha256), so a
        folder is reused only for that exact version: another store, or a store wiped and
        published again (version numbers start over), gets a folder of its own."""
        name, version = manifest["name"], manifest["version"]
        folder = self.cache_dir / name_folder(name) / f"{version}-{content_digest(manifest)}"
        if not folder.exists():
            try:
                self.registry.pull(f"{name}/{version}", folder)
            except (InvalidArgument, OSError):
                # Another worker process pulled it at the same time; its rename is atomic, so
                # a folder that exists now is complete.
                if not folder.exists():
                    raise
        return folder

    def _prune_cache(self, name: str, keep: set[str]) -> None:
        """Remove the model's cached folders that no published version has (deleted versions,
        or another store's), once they are older than PRUNE_AFTER_SECONDS: another worker
        sharing the cache may be a poll behind."""
        folder = self.cache_dir / name_folder(name)
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            for entry in folder.iterdir():
                if entry.name in keep or entry.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime > PRUNE_AFTER_SECONDS:
                        shutil.rmtree(entry, ignore_errors=True)

    def _fetch_tflite(self, name: str, version: int, quantize: str) -> dict[str, Path]:
        """The version's TFLite artifacts for one quantization mode (one per converted
        signature), pulled into the cache (verified) if not there yet."""
        files = {}
        for artifact, record in sorted(self.registry.artifacts(name, version).items()):
            metadata = record.get("metadata") or {}
            if record.get("kind") != "tflite" or metadata.get("quantize") != quantize:
                continue
            if metadata.get("select_tf_ops"):
                raise InvalidModel(f"{name}/{version} artifact {artifact} needs TensorFlow ops "
                                   f"({', '.join(metadata['select_tf_ops'])}) that LiteRT here "
                                   "cannot run; serve it with --runtime tensorflow")
            path = (self.cache_dir / name_folder(name) / f"{version}.artifacts" /
                    f"{artifact}-{record['sha256'][:16]}.tflite")
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                self.registry.pull_artifact(f"{name}/{version}", artifact, path)
            files[metadata.get("signature") or "serving_default"] = path
        if not files:
            raise ArtifactNotFound(f"{name}/{version} has no TFLite artifact for --quantize "
                               f"{quantize}; make one with `modelhub convert {name}/{version} "
                               f"--to tflite --quantize {quantize}`")
        return files

    def _load(self, name: str, version: int, attempts: int = 0) -> None:
        served = ServedVersion(name, version, state=LOADING, attempts=attempts + 1)
        with self._lock:
            self._versions[name][version] = served
        self._changed(served)
        started = time.perf_counter()
        try:
            config = self._config(name)
            folder = None  # the SavedModel's, when TensorFlow runs it
            served.manifest = self.registry.manifest(name, version)
            if (config.runtime or self.runtime) == "tflite":
                # LiteRT runs the converted file, but a graph refused at its source is refused
                # in every form.
                self._check_graph(served.manifest, self.registry.scan_version(served.manifest))
                files = self._fetch_tflite(name, version, config.quantize or self.quantize)
                served.runtime = TFLiteRuntime(files)
                served.device = served.runtime.device
            else:
                folder = self._fetch(served.manifest)
                # Scanned again here, from the files TensorFlow is about to load: a verdict
                # written in the manifest is not trusted, whoever wrote it.
                self._check_graph(served.manifest, scan_saved_model(folder))
                served.device = resolve_device(config.device or self.device)
                served.runtime = TensorFlowRuntime(folder, served.device)
            served.load_seconds = time.perf_counter() - started
            batching = config.batching or self.batching
            signatures = served.manifest["signatures"]
            if batching.enabled:
                served.batchers = {
                    sig_name: Batcher(functools.partial(served.runtime.run, sig_name), batching,
                                      on_batch=self._batch_observer(name, version, sig_name))
                    for sig_name in served.runtime.signature_names()
                    if sig_name in signatures and batchable(signatures[sig_name])}
            warm = time.perf_counter()
            features = self._example_features(served, folder)
            for sig_name in served.runtime.signature_names():
                if sig_name in signatures:
                    self._warm_up(served, sig_name, signatures[sig_name], features)
            served.warmup_seconds = time.perf_counter() - warm
            served.last_used = time.monotonic()
            served.state = AVAILABLE
            self._changed(served)
            log.info("%s/%d AVAILABLE on %s (load %.2fs, warmup %.2fs)", name, version,
                     served.device, served.load_seconds, served.warmup_seconds)
            self._enforce_budget(keep=served)
        except UnsafeModel as e:  # never loaded, never retried
            served.state, served.ended, served.error = END, REFUSED, f"refused: {e}"
            served.runtime, served.batchers = None, {}
            self._changed(served)
            log.error("%s/%d refused: %s", name, version, e)
        except Exception as e:  # the error is the version's state; other models carry on
            served.state, served.ended, served.error = END, FAILED, f"{type(e).__name__}: {e}"
            served.runtime, served.batchers = None, {}
            self._changed(served)
            served.failed_at = time.monotonic()
            if isinstance(e, ArtifactNotFound):
                served.attempts = 0  # not a failure of the version: try again on every poll
            log.error("%s/%d failed to load: %s", name, version, served.error)

    def _changed(self, served: ServedVersion) -> None:
        if self.metrics is not None:
            self.metrics.version_changed(served)

    def _batch_observer(self, name: str, version: int, signature: str):
        if self.metrics is None:
            return None
        return functools.partial(self.metrics.batch, name, version, signature)

    def _check_graph(self, manifest: dict, verdict: Verdict) -> None:
        """Raise UnsafeModel unless the graph is safe, or an admin allowed exactly what it was
        refused for: an allowance signed with the server's secret (not one written into the
        store), for this very graph (its saved_model.pb's sha256)."""
        if verdict.safe:
            return
        allowance = (self.registry.safety(manifest) or {}).get("allowance")
        graph = next((f["sha256"] for f in manifest["files"] if f["path"] == "saved_model.pb"),
                     None)
        if (allowance and allowance.get("graph_sha256") == graph
                and not verdict.refused_beyond(allowance.get("ops"))
                and self.genuine_allowance(allowance)):
            log.warning("%s/%d uses ops the safety scan refuses, allowed by %s: %s",
                        manifest["name"], manifest["version"], allowance.get("by"),
                        ", ".join(verdict.unsafe_ops))
            return
        raise UnsafeModel(f"the graph can reach outside the model: {verdict.summary()}")

    @staticmethod
    def _example_features(served: ServedVersion, folder: Path | None) -> list | None:
        """The tf.Example features the graph's parsers require (None: no parser to feed)."""
        if folder is None:
            return None
        try:
            return warmup.example_features(folder)
        except Exception as e:  # an unusual graph: its parsers stay cold, nothing else
            log.info("%s/%d: no tf.Example features for warm-up: %s", served.name,
                     served.version, first_line(e))
            return None

    @staticmethod
    def _warm_up(served: ServedVersion, sig_name: str, sig: dict, features: list | None) -> None:
        """Run the signature once per batch size it will see (1, and the batcher's sizes) so
        the first real requests do not pay for tracing and allocation (see `warmup`). Inputs
        that still do not suit a signature leave it cold, which costs time, not correctness."""
        batcher = served.batchers.get(sig_name)
        sizes = {1}
        if batcher is not None:
            sizes |= {batcher.options.max_batch_size, *batcher.options.allowed_batch_sizes}
        try:
            for rows in sorted(sizes):
                served.runtime.run(sig_name, warmup.inputs_for(sig, rows, features))
        except Exception as e:
            log.info("%s/%d: signature %s not warmed up: %s", served.name, served.version,
                     sig_name, first_line(e))

    def _unload(self, served: ServedVersion, why: str = RETIRED) -> None:
        served.state = UNLOADING
        with self._lock:
            # The table gets a new END record; `served` keeps its model for requests that are
            # still running on it, and TensorFlow frees it when the last of them lets go.
            ended = dataclasses.replace(served, state=END, ended=why, runtime=None, batchers={})
            self._versions[served.name][served.version] = ended
        self._changed(ended)
        log.info("%s/%d unloaded%s", served.name, served.version,
                 " (memory budget)" if why == EVICTED else "")

    def _enforce_budget(self, keep: ServedVersion) -> None:
        """Unload least-recently-used versions until the loaded ones fit the budget. A version's
        size is its files' size: for SavedModels, weights dominate both."""
        if not self.memory_budget:
            return
        while True:
            with self._lock:
                loaded = [sv for vs in self._versions.values() for sv in vs.values()
                          if sv.state == AVAILABLE]
            if sum(sv.manifest["total_size"] for sv in loaded) <= self.memory_budget:
                return
            candidates = sorted((sv for sv in loaded if sv is not keep), key=lambda sv: sv.last_used)
            if not candidates:
                log.warning("%s/%d alone exceeds the memory budget", keep.name, keep.version)
                return
            self._unload(candidates[0], EVICTED)

    def _load_on_demand(self, name: str, version: int) -> ServedVersion:
        """Load a version the budget evicted, once, while concurrent requests for it wait."""
        with self._lock:
            lock = self._load_locks.setdefault((name, version), threading.Lock())
        try:
            with lock:
                with self._lock:
                    served = self._versions[name][version]
                if served.evicted:
                    self._load(name, version)
                with self._lock:
                    return self._versions[name][version]
        finally:
            with self._lock:  # waiters hold the lock object itself: the table need not
                if self._load_locks.get((name, version)) is lock:
                    del self._load_locks[(name, version)]

    # --- lookups ------------------------------------------------------------------------------

    def _model_versions(self, name: str) -> dict[int, ServedVersion]:
        """A copy of the model's table, taken under the lock: the sync thread adds to it while
        requests read it."""
        check_name(name)
        with self._lock:
            versions = dict(self._versions.get(name) or {})
        if not versions:
            raise ModelNotFound(f"Servable not found for request: Latest({name})")
        return versions

    def get(self, name: str, version: int | None = None, label: str | None = None, *,
            load: bool = True) -> ServedVersion:
        """The AVAILABLE version a request should use: explicit, by label, or the newest. A
        version the memory budget evicted loads again here, unless `load` is false (then
        `NeedsLoad` is raised: the caller runs this again where it may block)."""
        versions = self._model_versions(name)
        if label is not None:
            check_alias(label)
            with self._lock:
                target = self._labels.get(name, {}).get(label)
            if target is None:
                raise AliasNotFound(f"Unrecognized servable version label: {label}")
            version = target
        if version is None:
            available = [v for v, sv in versions.items() if sv.state == AVAILABLE]
            evicted = [v for v, sv in versions.items() if sv.evicted]
            if not available and not evicted:
                raise NotAvailable(f"Servable not found for request: Latest({name}): no version "
                                   "is available")
            version = max(available or evicted)
        served = versions.get(version)
        if served is not None and served.evicted:
            if not load:
                raise NeedsLoad(f"{name}/{version} must load first")
            served = self._load_on_demand(name, version)
        if served is None or served.retired:
            raise VersionNotFound(f"Servable not found for request: Specific({name}, {version})")
        if served.state != AVAILABLE:
            detail = f": {served.error}" if served.error else ""
            raise NotAvailable(f"{name}/{version} is {served.state}{detail}")
        served.last_used = time.monotonic()
        return served

    def statuses(self, name: str, version: int | None = None,
                 label: str | None = None) -> list[ServedVersion]:
        versions = self._model_versions(name)
        if label is not None:
            with self._lock:
                version = self._labels.get(name, {}).get(label)
            if version is None:
                raise AliasNotFound(f"Unrecognized servable version label: {label}")
        if version is not None:
            if version not in versions:
                raise VersionNotFound(f"Servable not found for request: Specific({name}, {version})")
            return [versions[version]]
        with self._lock:
            return [versions[v] for v in sorted(versions, reverse=True)]

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            return dict(self._labels.get(name, {}))

    def all_models(self) -> dict[str, list[ServedVersion]]:
        with self._lock:
            return {name: [vs[v] for v in sorted(vs, reverse=True)]
                    for name, vs in sorted(self._versions.items())}

    def ready(self) -> bool:
        """The first load is done and every configured model has an AVAILABLE version."""
        if not self._synced.is_set():
            return False
        if self.configs is not None:
            names = sorted(self.configs)
        else:
            # Serving everything: readiness waits for the models there were at start. A model
            # published later, or one whose versions all failed, must not take every replica
            # out of traffic at once.
            names = self._initial_models
        with self._lock:
            served = {n: list(self._versions.get(n, {}).values()) for n in names}
        if self.configs is None:
            served = {n: vs for n, vs in served.items()
                      if vs and not all(v.failed or v.refused for v in vs)}
        return all(any(v.state == AVAILABLE for v in vs) for vs in served.values())
