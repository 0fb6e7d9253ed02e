"""`trimloop serve`: the REST API, the web UI and the scheduler in one process (uvicorn).

uvicorn's limits are set here (`server_config`): a deadline on each request's headers (uvicorn has
none, and its keep-alive timer is restarted by every byte, so a client sending headers a byte at a
time held a connection forever), a cap on a request's header bytes, the keep-alive idle time and a
ceiling on open connections. Request bodies are capped by the app (trimloop.api.limits).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import typer

from trimloop.api.cli.common import settings_and_engine
from trimloop.core.settings import Settings

log = logging.getLogger("trimloop.api")
MAX_HEADER_BYTES = 16 * 1024  # request line + headers; a browser's cookies fit several times over
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 512  # past it uvicorn answers 503 itself (no Retry-After): put a proxy in front before that


def serve(host: str = typer.Option(None, help="default: api.host (127.0.0.1)"),
          port: int = typer.Option(None, help="default: api.port (8000)"),
          no_scheduler: bool = typer.Option(False, "--no-scheduler",
                                            help="only the API and the web UI; run `trimloop worker` elsewhere")
          ) -> None:
    """Run the REST API, the web UI and the scheduler (a pass now, then every
    `scheduler.interval_minutes`) until Ctrl-C. Create a token first: `trimloop tokens create`."""
    import uvicorn

    from trimloop.api.app import create_app

    settings, engine = settings_and_engine()
    # the API's runs and the scheduler's passes share the bundled models: started once, stopped on exit
    app = create_app(settings, engine, scheduler=not no_scheduler)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("trimloop").setLevel(logging.INFO)  # each pass's summary, without library chatter
    # the price map (litellm's import: seconds) is read before the server listens, not in the first
    # request that prices a call: an OTLP exporter gives a batch 10 s before it gives up
    from trimloop.core.catalog import import_litellm

    import_litellm()
    uvicorn.Server(server_config(app, settings, host=host, port=port)).run()


def server_config(app: Any, settings: Settings, *, host: str | None = None, port: int | None = None) -> Any:
    """The uvicorn configuration `trimloop serve` runs `app` with, limits included."""
    import uvicorn

    return uvicorn.Config(app, host=host or settings.api.host, port=port or settings.api.port, log_level="info",
                          # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from any
                          # loopback peer; trimloop reads it itself, only from api.trusted_proxies
                          proxy_headers=False, http=header_deadline_protocol(settings.api.header_timeout_s),
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_keep_alive=KEEP_ALIVE_S,
                          limit_concurrency=MAX_CONNECTIONS)


def header_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request headers take over `timeout_s`."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(timeout_s, self._overdue)

        def _overdue(self) -> None:
            self._deadline = None
            # IDLE: h11 has not seen a whole request line and headers since the last response
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                log.info("closed a connection from %s: no complete request headers within %g s",
                         self.client[0] if self.client else "?", timeout_s)
                self.transport.close()

    return HeaderDeadline
