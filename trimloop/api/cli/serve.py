"""`trimloop serve`: the REST API on uvicorn (the web UI and the scheduler join it later)."""

from __future__ import annotations

import typer

from trimloop.api.cli.common import settings_and_engine


def serve(host: str = typer.Option(None, help="default: api.host (127.0.0.1)"),
          port: int = typer.Option(None, help="default: api.port (8000)")) -> None:
    """Run the REST API until Ctrl-C. Create a token first: `trimloop tokens create`."""
    import uvicorn

    from trimloop.api.app import create_app

    settings, engine = settings_and_engine()
    app = create_app(settings, engine)
    uvicorn.run(app, host=host or settings.api.host, port=port or settings.api.port, log_level="info")
