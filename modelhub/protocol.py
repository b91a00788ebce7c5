"""HTTP/1.1 with limits that slow or hostile clients cannot get around.

uvicorn's httptools protocol has no header-read or body-read timeout (a client that connects
and sends nothing, or half its headers, or a body one byte at a time, holds its connection for
ever) and no limit on header size or count. On an event loop such a client costs a coroutine,
not a thread, but it still holds a connection slot and memory. This protocol adds:

- a deadline for a request's headers, from its first byte, or from connecting when the client
  has sent nothing yet (`header_timeout`);
- a minimum body rate: at least 1 KiB every `body_timeout` seconds while a body is read (not
  counted while the server itself paused reading, when the app is the slow side);
- limits on the request line plus headers, in bytes (`max_header_bytes`, counted as they arrive,
  so one endless header is refused too) and in fields (`max_headers`), answered 431.

A request cut off by a timeout before its headers are whole is answered 408 (or just closed if
it never sent a byte); one whose body stalls is answered 408, or closed if a response started.
"""
from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from schemas.settings import Settings

#: A body must bring at least this many bytes per `body_timeout` window.
BODY_MIN_BYTES = 1024

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _TooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a parser error."""


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    max_header_bytes = 65536
    max_headers = 100

    @classmethod
    def configured(cls, settings: Settings) -> type["GuardedHttpProtocol"]:
        """This protocol with the server's settings (uvicorn builds a protocol per
        connection, from a class)."""
        return type(cls.__name__, (cls,), {
            "header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout,
            "max_header_bytes": settings.max_header_bytes, "max_headers": settings.max_headers})

    # --- connection -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._reading_headers = True
        self._header_bytes = self._header_count = 0
        self._body_bytes = 0
        self._refusal: int | None = None
        # Nothing arms a timer before the first response: a silent client would stay for ever.
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(self._header_timer)
        self._cancel(self._body_timer)
        self._header_timer = self._body_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        reading_headers = self._reading_headers
        super().data_received(data)
        if reading_headers and self._reading_headers and not self.transport.is_closing():
            # Still no end of headers: count what came, so one endless line is refused too.
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, "Request header fields too large")

    def send_400_response(self, msg: str) -> None:
        # A parser error raised by our own callbacks comes here: answer what it was.
        if self._refusal is not None:
            self._refuse(self._refusal, "Request header fields too large")
        else:
            super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._reading_headers = True  # the next request (keep-alive: its own timeout applies)

    # --- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_bytes = self._header_count = 0
        self._cancel(self._header_timer)
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def on_url(self, url: bytes) -> None:
        self._count_header(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value), 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._cancel(self._header_timer)
        self._header_timer = None
        super().on_headers_complete()
        self._arm_body_timer()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel(self._body_timer)
        self._body_timer = None
        super().on_message_complete()

    # --- limits and timers ------------------------------------------------------------------

    def _count_header(self, size: int, fields: int) -> None:
        self._header_bytes += size
        self._header_count += fields
        if self._header_bytes > self.max_header_bytes or self._header_count > self.max_headers:
            self._refusal = 431
            raise _TooLarge()

    def _arm_body_timer(self) -> None:
        self._body_bytes = 0
        self._cancel(self._body_timer)
        self._body_timer = self.loop.call_later(self.body_timeout, self._body_too_slow)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._reading_headers:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is still being answered; its successor waits behind it
        if self._header_bytes or getattr(self, "url", b""):
            self._refuse(408, "Request header timeout")
        else:
            self.transport.close()  # never sent a byte (or idle between requests)

    def _body_too_slow(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None or not cycle.more_body:
            return
        if self.flow.read_paused or self._body_bytes >= BODY_MIN_BYTES:
            self._arm_body_timer()  # the client keeps up, or the app is the slow side
            return
        if cycle.response_started:
            self.transport.close()  # the app's receive() sees the disconnect
        else:
            cycle.disconnected = True
            cycle.message_event.set()
            self._refuse(408, "Request body timeout")

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, _REASONS[status], len(body), body))
        self.transport.close()

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()
