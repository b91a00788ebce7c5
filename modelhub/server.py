"""Running the app: gunicorn as the process manager, given the settings object in memory.

The app is built in each worker after the fork (`load`), so the master never imports TensorFlow
and each worker holds its own models; the settings reach the workers with the fork, not through
environment variables or strings naming modules.

Each worker confines itself with Landlock (`serving/confinement.py`) right after the fork, before
it starts a thread or imports TensorFlow: from then on, the models it runs can open only what the
worker needs (Python and its libraries, the model cache, the store if it is a local folder, a
private temp folder) and connect only to the store's port.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from gunicorn.app.base import BaseApplication

from hub.auth import load_secret, secret_file_for
from schemas.settings import Settings
# Imported here, in the master, before the fork: it imports numpy, whose OpenBLAS starts a
# thread per core at import; a forked worker starts with the forking thread only.
from serving import confinement
from storage import LocalStore, ObjectStore, open_store

log = logging.getLogger("modelhub.server")

#: Publish metadata travels in a header; model cards of a useful size must fit.
MAX_HEADER_BYTES = 65536
#: Our packages, imported by the worker after confinement (an editable install's code is not in
#: site-packages).
PACKAGES = ("modelhub", "hub", "serving", "storage", "schemas")


def worker_count(settings: Settings) -> int:
    if settings.workers:
        return settings.workers
    if settings.role == "hub":
        return max(2, min(4, os.cpu_count() or 1))  # transfers are I/O bound
    # TensorFlow runs its own thread pools; one process holds each model once in memory.
    return 1


def gunicorn_options(settings: Settings) -> dict:
    return {
        "bind": [f"{settings.host}:{settings.port}"],
        "workers": worker_count(settings),
        "worker_class": "gthread",
        "threads": settings.threads,
        "timeout": settings.timeout,
        "graceful_timeout": settings.graceful_timeout,
        "limit_request_field_size": MAX_HEADER_BYTES,
        "accesslog": "-",
        "errorlog": "-",
        # one fixed control-socket path would be shared by every server on the machine
        "control_socket_disable": True,
    }


def _s3_port(store: ObjectStore) -> int:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint)
        return parsed.port or (443 if parsed.scheme == "https" else 80)
    return 443


def confine_worker(settings: Settings, store: ObjectStore) -> confinement.Confinement:
    """Restrict this (forked, single-threaded) worker to what it needs."""
    if not settings.confine:
        return confinement.Confinement(confinement.landlock_abi(), False, (), (), "turned off "
                                       "(--no-confine)")
    cache = Path(settings.serving_cache).expanduser()
    temp = cache / ".tmp"
    temp.mkdir(parents=True, exist_ok=True)  # a folder made after confinement gets no rule
    os.environ["TMPDIR"] = str(temp)
    tempfile.tempdir = None  # tempfile reads TMPDIR again
    read, write = [], [cache]
    if settings.model_config:
        read.append(Path(settings.model_config).expanduser())
    local = isinstance(store, LocalStore)
    if local:
        (write if settings.hosts_hub else read).append(store.root)
        secret = secret_file_for(store, settings)
        if secret:
            read.append(secret)
    read_only, read_write = confinement.default_paths(
        cache, read, write, temp_dir=temp, packages=PACKAGES, network_client=not local)
    return confinement.confine(read_only, read_write,
                               connect_ports=() if local else (_s3_port(store),))


class Server(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)
        self.cfg.set("post_fork", self.post_fork)

    def post_fork(self, arbiter, worker) -> None:
        result = confine_worker(self.settings, open_store(self.settings.store))
        confinement.CURRENT = result
        if result.enforced:
            arbiter.log.info("worker %s confined with Landlock (ABI %s): read-only %d paths, "
                             "read-write %s%s", worker.pid, result.abi, len(result.read_only),
                             ", ".join(result.read_write),
                             "" if not result.tcp_restricted else
                             f"; TCP connect only to {list(result.connect_ports) or 'nothing'}")
        else:
            arbiter.log.warning("worker %s is not confined: %s", worker.pid, result.reason)
        if result.unconfined_threads:
            arbiter.log.error("worker %s: %d threads were already running and stay unconfined",
                              worker.pid, result.unconfined_threads)

    def load(self):
        from .app import create_app

        return create_app(self.settings)


def run(settings: Settings) -> None:
    """Serve until stopped (SIGTERM lets in-flight requests finish)."""
    store = open_store(os.path.expanduser(settings.store))
    if isinstance(store, LocalStore):
        load_secret(store, settings)  # made now, while the process may still write beside it
    Server(settings).run()
