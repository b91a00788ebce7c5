"""Running the app: gunicorn as the process manager, each worker an event loop (uvicorn) serving
the ASGI app of `modelhub.asgi`, given the settings object in memory.

- The app is built in each worker after the fork (`load`), so the master never imports
  TensorFlow and each worker holds its own models; the settings reach the workers with the
  fork, not through environment variables or strings naming modules.
- Each worker has a listening socket of its own (`SO_REUSEPORT`), so the kernel spreads new
  connections over the workers evenly, and its own gRPC server on the gRPC port (gRPC sets
  `SO_REUSEPORT` too). The master checks that both ports are free first: with `SO_REUSEPORT` a
  second server on the same port would otherwise share it silently.
- Each worker confines itself with Landlock (`serving/confinement.py`) right after the fork,
  before it starts a thread or imports TensorFlow: from then on, the models it runs can open
  only what the worker needs (Python and its libraries, the model cache, the store if it is a
  local folder, a private temp folder, the run folder) and connect only to the store's port.
- Workers share a run folder (`rundir`): Prometheus' multiprocess files, and a file per worker
  saying whether it is ready.
"""
from __future__ import annotations

import errno
import logging
import mimetypes
import logging.handlers
import os
import queue
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from gunicorn.app.base import BaseApplication
from uvicorn_worker import UvicornWorker

from hub import native_log
from hub.auth import load_secret, secret_file_for
from schemas.errors import InvalidArgument
from schemas.serving import cpu_cores
from schemas.settings import Settings
# Imported here, in the master, before the fork: it imports numpy, whose OpenBLAS starts a
# thread per core at import; a forked worker starts with the forking thread only.
from serving import confinement
from storage import LocalStore, ObjectStore, open_store

from .protocol import GuardedHttpProtocol
from .rundir import RunDir

log = logging.getLogger("modelhub.server")

# Read /etc/mime.types here, in the master: a confined worker may not (the catalog's static
# files need their types).
mimetypes.init()

#: Our packages, imported by the worker after confinement (an editable install's code is not in
#: site-packages).
PACKAGES = ("modelhub", "hub", "serving", "storage", "schemas")


class ModelhubWorker(UvicornWorker):
    """A gunicorn worker running uvicorn with modelhub's HTTP protocol and limits."""

    CONFIG_KWARGS: dict = {}

    @classmethod
    def configured(cls, settings: Settings) -> type["ModelhubWorker"]:
        return type(cls.__name__, (cls,), {"CONFIG_KWARGS": {
            "loop": "uvloop",
            "http": GuardedHttpProtocol.configured(settings),
            "lifespan": "on",  # a failed startup (the gRPC port taken) stops the worker
            "limit_concurrency": settings.max_connections,
            "timeout_keep_alive": settings.keep_alive,
            "timeout_graceful_shutdown": settings.graceful_timeout,
            "access_log": settings.access_log,
            "server_header": False,
        }})


def gunicorn_options(settings: Settings) -> dict:
    return {
        "bind": [f"{settings.host}:{settings.port}"],
        "workers": settings.worker_processes,
        "worker_class": ModelhubWorker.configured(settings),
        "reuse_port": True,
        "timeout": settings.timeout,
        "graceful_timeout": settings.graceful_timeout,
        "accesslog": None,  # uvicorn's own, through a queue (see _queue_access_log)
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


def confine_worker(settings: Settings, store: ObjectStore,
                   run_dir: Path | None = None) -> confinement.Confinement:
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
    if run_dir is not None:
        write.append(run_dir)
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
                               connect_ports=() if local else (_s3_port(store),),
                               bind_ports=[p for p in (settings.grpc_serving_port,) if p])


def check_port_free(host: str, port: int, what: str) -> None:
    """Refuse a port something listens on already (SO_REUSEPORT would let us share it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InvalidArgument(f"the {what} port {port} on {host} is in use") from None
            raise


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _queue_access_log() -> None:
    """uvicorn's access log through a queue: the loop hands a record over, a thread writes."""
    records: queue.SimpleQueue = queue.SimpleQueue()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    listener = logging.handlers.QueueListener(records, handler)
    listener.start()
    access = logging.getLogger("uvicorn.access")
    access.handlers = [logging.handlers.QueueHandler(records)]
    access.setLevel(logging.INFO)
    access.propagate = False


class Server(BaseApplication):
    def __init__(self, settings: Settings, run_dir: RunDir):
        self.settings = settings
        self.run_dir = run_dir
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)
        self.cfg.set("post_fork", self.post_fork)
        self.cfg.set("child_exit", self.child_exit)

    def post_fork(self, arbiter, worker) -> None:
        self.run_dir.worker_state(worker.pid, "starting")
        result = confine_worker(self.settings, open_store(self.settings.store),
                                self.run_dir.path)
        confinement.CURRENT = result
        if result.enforced:
            arbiter.log.info("worker %s confined with Landlock (ABI %s): read-only %d paths, "
                             "read-write %s%s", worker.pid, result.abi, len(result.read_only),
                             ", ".join(result.read_write),
                             "" if not result.tcp_restricted else
                             f"; TCP connect only to {list(result.connect_ports) or 'nothing'}"
                             f", bind {list(result.bind_ports) or 'nothing'}")
        else:
            arbiter.log.warning("worker %s is not confined: %s", worker.pid, result.reason)
        if result.unconfined_threads:
            arbiter.log.error("worker %s: %d threads were already running and stay unconfined",
                              worker.pid, result.unconfined_threads)
        if self.settings.access_log:
            _queue_access_log()
        native_log.filter_stderr()  # before TensorFlow is imported, after confinement
        # The workers share the cores: each TensorFlow runs its ops on its share of them, not on
        # all of them at once in every worker (TF_NUM_INTRAOP_THREADS set by hand wins).
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS",
                              str(max(1, cpu_cores() // self.settings.worker_processes)))

    def child_exit(self, arbiter, worker) -> None:
        from prometheus_client import multiprocess

        self.run_dir.worker_gone(worker.pid)
        multiprocess.mark_process_dead(worker.pid)  # its gauges go; its counts stay

    def load(self):
        from .asgi import create_asgi

        return create_asgi(self.settings, run_dir=self.run_dir)


def run(settings: Settings, run_dir: RunDir) -> None:
    """Serve until stopped (SIGTERM lets in-flight requests finish, REST and gRPC)."""
    store = open_store(os.path.expanduser(settings.store))
    if isinstance(store, LocalStore):
        load_secret(store, settings)  # made now, while the process may still write beside it
    if settings.port == 0:  # every worker binds its own socket: they must agree on a port
        settings = settings.replace(port=free_port(settings.host))
    check_port_free(settings.host, settings.port, "HTTP")
    if settings.grpc_serving_port:
        check_port_free(settings.host, settings.grpc_port, "gRPC")
    try:
        Server(settings, run_dir).run()
    finally:
        run_dir.remove()
