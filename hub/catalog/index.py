"""The catalog's index: one summary per model, in memory, so that the list and search answer
without reading the store (on S3 each manifest is a request away).

It is derived, never the source of truth, and rebuilt from the store at any time:

- A refresh lists every model key once (`models/`, `namespaces/`: about 30 requests for 30,000
  keys on S3) and gives each model a signature: the keys of its versions, aliases, tombstones
  and artifacts with their ETags. Only models whose signature changed are read again (their
  latest manifest, aliases and artifact records); models gone from the listing are dropped.
- A hub that writes a model refreshes it at once (`touch`) and leaves a marker in the store
  (`catalog/changes/<time>-<id>`, holding the name). Every process reads the markers it has not
  seen before it answers a list (`sync_changes`: one small listing), so a write through any
  worker or replica of any hub shows on all of them at once. Writes that bypass the hubs (the
  CLI straight on the store) show at the next full refresh, every `poll_seconds`, which also
  removes markers older than a few intervals.
- A snapshot (`catalog/index.json`, with the signatures) is written after a refresh that changed
  something; a starting process loads it and then refreshes, so it reads only what changed since.
  Any number of replicas may share one store: a stale or half-written snapshot costs reads,
  never a wrong answer, because every entry is checked against the listing before it is served.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections import defaultdict

from schemas.errors import ModelhubError
from schemas.manifest import namespace_of

from ..registry import Registry
from ..registry.files import parallel_map
from ..registry.layout import alias_key, model_name_of
from ..registry.safety import safety_state

log = logging.getLogger(__name__)

SNAPSHOT_KEY = "catalog/index.json"
SNAPSHOT_VERSION = 1
CHANGES = "catalog/changes/"
#: Markers are kept this many poll intervals (at least a minute), then removed.
CHANGES_KEPT_POLLS = 5


def _kind(name: str, key: str) -> str:
    """versions, aliases, deleted, artifacts or scans: what a model's key holds."""
    rest = key.split("/")[2:] if "/" not in name else key.split("/")[4:]
    return rest[0] if rest else ""


def _iso(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class CatalogIndex:
    def __init__(self, registry: Registry, poll_seconds: float = 30.0,
                 snapshot: bool = True):
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.snapshot = snapshot
        self._entries: dict[str, dict] = {}
        self._signatures: dict[str, str] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._seen_changes: set[str] = set()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading ---------------------------------------------------------------------------

    def entries(self) -> list[dict]:
        """Every model's summary (the first refresh is awaited, up to a minute)."""
        self._ready.wait(60)
        with self._lock:
            return list(self._entries.values())

    def entry(self, name: str) -> dict | None:
        self._ready.wait(60)
        with self._lock:
            return self._entries.get(name)

    def search(self, query: str | None = None, *, tag: str | None = None,
               license: str | None = None, safety: str | None = None,
               sort: str = "name", visible=lambda namespace: True) -> list[dict]:
        """Models matching `query` (name, description, tags) and the filters, sorted."""
        q = (query or "").lower()
        found = []
        for entry in self.entries():
            if not visible(entry["namespace"]):
                continue
            if q and not (q in entry["name"] or q in entry["description"].lower()
                          or any(q in f"{k}={v}".lower() for k, v in entry["tags"].items())):
                continue
            if tag and tag not in {f"{k}={v}" for k, v in entry["tags"].items()} | \
                    set(entry["tags"]):
                continue
            if license and entry["license"] != license:
                continue
            if safety and entry["safety"] != safety:
                continue
            found.append(entry)
        key = {"name": lambda e: e["name"], "updated": lambda e: e["updated"],
               "size": lambda e: e["total_size"]}.get(sort, lambda e: e["name"])
        return sorted(found, key=key, reverse=sort in ("updated", "size"))

    # --- keeping it current ----------------------------------------------------------------

    def start(self) -> None:
        """Load the snapshot, refresh, then keep refreshing on a thread."""
        self._thread = threading.Thread(target=self._run, name="catalog-index", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        self._load_snapshot()
        while True:
            try:
                self.refresh()
            except Exception:  # the store may be away; the next round tries again
                log.exception("catalog index refresh failed")
            finally:
                self._ready.set()
            if self.poll_seconds <= 0 or self._stop.wait(self.poll_seconds):
                return

    def refresh(self) -> int:
        """One pass: list the store, read what changed. Returns how many models were read."""
        with self._refresh_lock:
            keys: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for prefix in ("models/", "namespaces/"):
                for info in self.registry.store.list(prefix):
                    name = model_name_of(info.key)
                    if name is not None:
                        keys[name].append((info.key, info.etag))
            signatures = {name: json.dumps(sorted(found)) for name, found in keys.items()}
            with self._lock:
                changed = [n for n, s in signatures.items() if self._signatures.get(n) != s]
                gone = set(self._entries) - set(signatures)
            built = parallel_map(lambda n: (n, self._build(n, keys[n])), changed)
            with self._lock:
                for name in gone:
                    self._entries.pop(name, None)
                    self._signatures.pop(name, None)
                for name, entry in built:
                    if entry is None:
                        self._entries.pop(name, None)
                    else:
                        self._entries[name] = entry
                    self._signatures[name] = signatures[name]
            if (changed or gone) and self.snapshot:
                self._save_snapshot()
            with contextlib.suppress(ModelhubError):
                self._prune_changes()
            self._ready.set()
            return len(changed)

    def touch(self, name: str) -> None:
        """This process just wrote `name`: refresh it here now, and tell the others."""
        self.refresh_model(name)
        marker = f"{CHANGES}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        with contextlib.suppress(ModelhubError):  # derived data: the full refresh catches up
            self.registry.store.put_bytes(marker, name.encode())
            with self._lock:
                self._seen_changes.add(marker)

    def sync_changes(self) -> None:
        """Refresh the models other processes have written since the last call (one listing of
        the markers, and a read per new one)."""
        try:
            markers = self.registry.store.list_keys(CHANGES)
        except ModelhubError:
            return
        with self._lock:
            new = [m for m in markers if m not in self._seen_changes]
        names = set()
        for marker in new:
            with contextlib.suppress(ModelhubError):
                names.add(self.registry.store.get_bytes(marker).decode())
        for name in sorted(names):
            self.refresh_model(name)
        with self._lock:
            self._seen_changes = set(markers)

    def _prune_changes(self) -> None:
        keep_ns = max(60.0, CHANGES_KEPT_POLLS * self.poll_seconds) * 1e9
        for marker in self.registry.store.list_keys(CHANGES):
            stamp = marker[len(CHANGES):].split("-", 1)[0]
            if stamp.isdigit() and time.time_ns() - int(stamp) > keep_ns:
                with contextlib.suppress(ModelhubError):
                    self.registry.store.delete(marker)

    def refresh_model(self, name: str) -> None:
        """Read one model again."""
        prefix = self.registry_prefix(name)
        found = [(info.key, info.etag) for info in self.registry.store.list(prefix)
                 if model_name_of(info.key) == name]
        entry = self._build(name, found) if found else None
        with self._lock:
            if entry is None:
                self._entries.pop(name, None)
                self._signatures.pop(name, None)
            else:
                self._entries[name] = entry
                self._signatures[name] = json.dumps(sorted(found))

    @staticmethod
    def registry_prefix(name: str) -> str:
        from ..registry.layout import model_prefix

        return model_prefix(name)

    def _build(self, name: str, keys: list[tuple[str, str]]) -> dict | None:
        """A model's summary from its keys (already listed) and its latest manifest: one read,
        plus one per alias."""
        registry = self.registry
        by_kind: dict[str, list[str]] = defaultdict(list)
        for key, _ in keys:
            by_kind[_kind(name, key)].append(key.split("/")[-1].removesuffix(".json")
                                             if _kind(name, key) != "artifacts" else key)
        versions = sorted(int(v) for v in by_kind["versions"] if v.isdigit())
        if not versions:
            return None
        try:
            latest = registry.manifest(name, versions[-1])
            aliases = {alias: int(registry.store.get_json(alias_key(name, alias))["version"])
                       for alias in sorted(by_kind["aliases"])}
            safety = safety_state(registry.safety(latest))
        except ModelhubError as e:  # deleted meanwhile, or damaged: left out until it heals
            log.warning("catalog: leaving %s out: %s", name, e)
            return None
        prefix = f"{self.registry_prefix(name)}artifacts/{versions[-1]}/"
        tflite = sorted(key[len(prefix):-5] for key in by_kind["artifacts"]
                        if key.startswith(prefix) and key[len(prefix):].startswith("tflite"))
        return {
            "name": name, "namespace": namespace_of(name), "latest": versions[-1],
            "versions": versions,
            "deleted": sorted(int(v) for v in by_kind["deleted"] if v.isdigit()),
            "aliases": aliases, "description": latest["description"], "tags": latest["tags"],
            "license": latest["license"], "updated": _iso(latest["created"]),
            "total_size": latest["total_size"], "safety": safety, "tflite": tflite,
        }

    # --- the snapshot --------------------------------------------------------------------------

    def _save_snapshot(self) -> None:
        with self._lock:
            data = {"version": SNAPSHOT_VERSION, "written": time.time(),
                    "entries": self._entries, "signatures": self._signatures}
            body = json.dumps(data, default=str).encode()
        with contextlib.suppress(ModelhubError):  # derived data: losing it costs reads only
            self.registry.store.put_bytes(SNAPSHOT_KEY, body)

    def _load_snapshot(self) -> None:
        try:
            data = json.loads(self.registry.store.get_bytes(SNAPSHOT_KEY))
        except (ModelhubError, ValueError):
            return
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            return
        with self._lock:
            self._entries = dict(data.get("entries") or {})
            self._signatures = dict(data.get("signatures") or {})
