"""uvicorn with the connection timeouts it lacks: a client must send its request headers in time.

uvicorn closes an idle kept-alive connection after ``timeout_keep_alive`` seconds, but a connection
that sends nothing, or half a header, stays open for good: idle and half-sent-header connections
stayed open past 60 s, each holding a socket. Every connection here must complete its request headers
within ``header_timeout`` seconds of connecting or of its previous response; the body then has its
own minimum rate (:mod:`genrekit.serve._upload`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ._defaults import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_KEEP_ALIVE_S

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["HeaderTimeoutProtocol", "server_config", "run"]


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers do not arrive within ``header_timeout`` s."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete and self._header_timer is not None:
            self._header_timer.cancel()  # a request's headers are complete: the app takes over
            self._header_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _expire(self) -> None:
        self._header_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def server_config(app: FastAPI, *, host: str, port: int, log_level: str = "info", header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S) -> uvicorn.Config:
    """The uvicorn config ``genrekit serve`` runs: h11 with the header timeout, and uvicorn's keep-alive timeout."""
    protocol = type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout_s})
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, http=protocol, timeout_keep_alive=DEFAULT_KEEP_ALIVE_S
    )


def run(app: FastAPI, **options: Any) -> None:
    """Serve ``app`` until interrupted; ``options`` as :func:`server_config`."""
    uvicorn.Server(server_config(app, **options)).run()
