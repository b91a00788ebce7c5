"""moto's S3 server for the tests, with conditional writes made atomic.

AWS S3 checks `If-Match` / `If-None-Match` and writes in one step; moto's server checks, then
writes, on whichever of its threads took the request, so two concurrent compare-and-swaps can
both win (seen here once in a few hundred runs of the contention test). This runs moto's own
application with one lock around conditional writes, so the tests see S3's behaviour; every other
request stays concurrent.

    python -m tests.support.s3server PORT
"""
from __future__ import annotations

import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

_CONDITIONAL = threading.Lock()


def atomic_conditional_writes(app):
    def wrapped(environ, start_response):
        conditional = environ["REQUEST_METHOD"] in ("PUT", "POST") and (
            "HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ)
        if not conditional:
            return app(environ, start_response)
        with _CONDITIONAL:
            # The body is read and the object written inside the lock: the whole response is
            # produced before another conditional write may start.
            return list(app(environ, start_response))
    return wrapped


def main() -> None:
    port = int(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, atomic_conditional_writes(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
