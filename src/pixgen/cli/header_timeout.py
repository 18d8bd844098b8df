"""A bound on the time a client takes to send a request's headers (``--header-timeout``), for ``pixgen serve``.

uvicorn (0.55, httptools and h11 alike) bounds only the idle wait after an answer (``timeout_keep_alive``, cancelled
as soon as any byte arrives); a client that connects and never finishes its headers — or sends one byte of them a
second — holds its connection forever (slow-loris). ``with_header_timeout`` subclasses uvicorn's HTTP protocol:
when a connection opens and each time an answer ends, a timer starts; if no new request's headers are complete
when it fires (no new request cycle has begun and none is running), the connection is closed. A request whose
headers arrived in time is never cut: its body and its answer (an SSE stream, a Workers AI wait) take as long as
they take.
"""

from __future__ import annotations

import asyncio
from typing import Any


def with_header_timeout(base: type[asyncio.Protocol], seconds: float) -> type[asyncio.Protocol]:
    """``base`` (uvicorn's ``HttpToolsProtocol`` or ``H11Protocol``) closing connections whose request headers take
    longer than ``seconds``."""

    class HeaderTimeout(base):  # type: ignore[valid-type,misc]  # a base chosen at run time
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._start_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._start_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _start_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._headers_late, self.cycle)

        def _headers_late(self, cycle: Any) -> None:
            idle = cycle is None or cycle.response_complete  # no request is being answered now
            if self.cycle is cycle and idle and not self.transport.is_closing():
                self.transport.close()

    HeaderTimeout.__name__ = HeaderTimeout.__qualname__ = f"HeaderTimeout{base.__name__}"
    return HeaderTimeout


def http_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's default HTTP protocol (httptools when installed, else h11) with the header timeout."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return with_header_timeout(AutoHTTPProtocol, seconds)
