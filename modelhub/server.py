"""Running the app: gunicorn as the process manager, given the settings object in memory.

The app is built in each worker after the fork (`load`), so the master never imports TensorFlow
and each worker holds its own models; the settings reach the workers with the fork, not through
environment variables or strings naming modules.
"""
from __future__ import annotations

import os

from gunicorn.app.base import BaseApplication

from schemas.settings import Settings

#: Publish metadata travels in a header; model cards of a useful size must fit.
MAX_HEADER_BYTES = 65536


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


class Server(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def load(self):
        from .app import create_app

        return create_app(self.settings)


def run(settings: Settings) -> None:
    """Serve until stopped (SIGTERM lets in-flight requests finish)."""
    Server(settings).run()
