"""`trimloop serve`: the REST API, the web UI and the scheduler in one process (uvicorn)."""

from __future__ import annotations

import logging

import typer

from trimloop.api.cli.common import settings_and_engine


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
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from any loopback peer;
    # trimloop reads it itself, only from api.trusted_proxies (auth.client_address)
    uvicorn.run(app, host=host or settings.api.host, port=port or settings.api.port, log_level="info",
                proxy_headers=False)
