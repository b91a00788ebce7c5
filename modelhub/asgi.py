"""One worker's application, on its event loop: the prediction APIs natively, and the control
plane (Flask: the hub API, tokens, metrics, readiness) mounted beside them.

    /v1/..., /v2/...   TF Serving's and KServe V2's REST APIs: coroutines on the loop, no thread
                       per request; the model runs on the batchers' threads
    /healthz           answered on the loop (liveness must not wait behind busy threads)
    everything else    Flask, on a pool of `threads` threads (a2wsgi streams bodies both ways)
    gRPC               TF Serving's and KServe V2's services on `grpc_port`, started with the
                       worker on the same loop, so every protocol shares the same batchers

Why this shape: predictions are small, many and latency-bound, so they skip every layer that
costs a thread switch or a framework; the hub API is few, large, streaming requests, which a
thread pool and Flask serve well, and they stay one codebase with the in-process tests.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from a2wsgi import WSGIMiddleware

from schemas.settings import Settings
from serving import Serving
from serving.rest import prediction_path
from serving.rest.http import json_response, send_response

from .app import create_app
from .health import LIVE
from .rundir import READY, STARTING, RunDir

log = logging.getLogger(__name__)

#: How often a worker writes down whether it is ready.
READINESS_SECONDS = 0.25


def _input_terminated(wsgi_app):
    """uvicorn ends every body (chunked ones too), so Flask may read to the end of a body that
    has no Content-Length; without this, a chunked upload reads as empty."""

    def app(environ, start_response):
        environ["wsgi.input_terminated"] = True
        return wsgi_app(environ, start_response)

    return app


class ModelhubApp:
    """The ASGI application of one worker."""

    def __init__(self, settings: Settings, flask_app, run_dir: RunDir | None = None):
        self.settings = settings
        self.flask_app = flask_app
        self.serving: Serving | None = flask_app.extensions.get("serving")
        self.run_dir = run_dir
        self.control = WSGIMiddleware(_input_terminated(flask_app.wsgi_app),
                                      workers=settings.threads)
        self.predictions = self.serving.rest_front() if self.serving else None
        self.grpc = None
        self._tasks: list[asyncio.Task] = []

    async def __call__(self, scope: dict, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if self.predictions is not None and prediction_path(path):
                await self.predictions(scope, receive, send)
            elif path == "/healthz":
                await send_response(send, json_response(LIVE))
            else:
                await self.control(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets: not spoken here
            await send({"type": "websocket.close", "code": 1003})

    # --- the worker's life --------------------------------------------------------------------

    async def _lifespan(self, receive, send) -> None:
        await receive()  # lifespan.startup
        try:
            await self.start()
        except Exception as e:
            log.exception("worker startup failed")
            await send({"type": "lifespan.startup.failed", "message": str(e)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await self.stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def start(self) -> None:
        if self.settings.grpc_serving_port:
            from serving.grpc import start_grpc_server

            self.grpc = await start_grpc_server(self.serving, self.settings.host,
                                                self.settings.grpc_port)
        if self.run_dir is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._report_readiness()))

    async def stop(self) -> None:
        """After uvicorn has let in-flight HTTP requests finish: gRPC stops taking calls and
        lets its own finish, within the graceful timeout."""
        if self.grpc is not None:
            await self.grpc.stop(self.settings.graceful_timeout)
        for task in self._tasks:
            task.cancel()
        if self.serving is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.serving.manager.stop)

    async def _report_readiness(self) -> None:
        """Keep this worker's line in the run folder current, for `/readyz` on any worker."""
        manager = self.serving.manager if self.serving else None
        pid, reported = os.getpid(), None
        while True:
            state = READY if manager is None or manager.ready() else STARTING
            if state != reported:
                with contextlib.suppress(OSError):
                    self.run_dir.worker_state(pid, state)
                    reported = state
            await asyncio.sleep(READINESS_SECONDS)


def create_asgi(settings: Settings, *, run_dir: RunDir | None = None) -> ModelhubApp:
    if settings.grpc_serving_port:
        # Its protos import TensorFlow's: done here, before the model manager's thread starts
        # importing TensorFlow too (two threads importing one package see it half made).
        import serving.grpc  # noqa: F401
    return ModelhubApp(settings, create_app(settings, run_dir=run_dir), run_dir)
