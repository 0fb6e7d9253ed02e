"""The FastAPI app: routers, auth, the one error shape, and the background run scheduler.

`create_app(settings, engine, gateway)` builds it; with no engine it migrates and opens the
database named by the settings. Every route except `/health` needs a bearer token. Requests take
turns at the database and bodies are capped (trimloop.api.limits).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from trimloop.api import errors
from trimloop.api.auth import LoginLimiter, Reader
from trimloop.api.limits import BodyLimit, Turns
from trimloop.api.routes import audit, connectors, datasets, health, prompts, reports, runs, suggestions, tokens
from trimloop.api.runner import RunScheduler
from trimloop.api.ui import routes as ui
from trimloop.core.db import get_engine, upgrade
from trimloop.core.settings import Settings, load_settings

DESCRIPTION = """\
trimloop proposes cheaper, faster versions of your LLM prompts with statistical proof that
quality holds. Authenticate with `Authorization: Bearer <token>` (`trimloop tokens create`).

Roles: **viewer** reads; **reviewer** also approves and rejects; **engineer** also runs, syncs
and deploys; **admin** does everything, including tokens. Errors always have the body
`{"error": {"code", "message", "where", "hint"}}`.
"""

TAGS = [
    {"name": "prompts", "description": "prompts, versions, traffic and cost from logs"},
    {"name": "connectors", "description": "prompt stores and log sources: test, sync"},
    {"name": "datasets", "description": "frozen items for evaluation; gold-set import"},
    {"name": "runs", "description": "optimization runs: start, watch, cancel"},
    {"name": "suggestions", "description": "review queue, decisions, deploy / promote / rollback"},
    {"name": "reports", "description": "spend and savings, projected and realized"},
    {"name": "audit", "description": "who did what, when"},
    {"name": "tokens", "description": "API tokens (admin)"},
    {"name": "health", "description": "liveness"},
]


def create_app(settings: Settings | None = None, engine: Engine | None = None, gateway: Any | None = None) -> FastAPI:
    """The API over `engine` (default: the settings' database, migrated to the newest schema)."""
    settings = settings or load_settings()
    if engine is None:
        upgrade(settings.db_url)
        engine = get_engine(settings)
    scheduler = RunScheduler(engine=engine, settings=settings, gateway=gateway)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # worker threads for sync routes, sized with the pool: a turn's request uses one at a time,
        # so threads never run out while requests holding connections wait for one
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, 2 * settings.api.concurrent_requests + 8)
        yield
        await scheduler.close()

    app = FastAPI(title="trimloop", version="0.1.0", description=DESCRIPTION, openapi_tags=TAGS,
                  lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings, app.state.engine, app.state.runs = settings, engine, scheduler
    app.state.login_limiter = LoginLimiter(settings.api.failed_logins_per_minute)
    app.state.turns = Turns(settings.api.concurrent_requests, settings.api.queue_timeout_s)
    app.add_middleware(BodyLimit, api_bytes=settings.api.max_body_bytes, form_bytes=settings.api.max_form_bytes,
                       pause_s=settings.api.body_timeout_s)
    errors.install(app)
    app.include_router(health.router)
    for module in (prompts, connectors, datasets, runs, suggestions, reports, audit, tokens):
        app.include_router(module.router, responses=errors.ERROR_RESPONSES)
    ui.install(app)

    @app.get("/openapi.json", include_in_schema=False, responses=errors.ERROR_RESPONSES)
    def openapi_document(_: Reader) -> dict[str, Any]:
        """The OpenAPI document, behind a token like everything but /health."""
        return app.openapi()

    return app
