"""The FastAPI app: routers, auth, the one error shape, and the services it hosts.

`create_app(settings, engine, gateway, scheduler=...)` builds it; with no engine it migrates and
opens the database named by the settings. Every route except `/health` needs a bearer token. Its
one lifespan runs what it hosts: the runs `POST /runs` starts (`runner.RunScheduler`) and, with
`scheduler` (`trimloop serve`), the scheduler's passes (`scheduler.HostedPasses`), both over the
one `gateway` (default: `executor.real_gateway`, whose bundled models stop with the app).
Requests take turns at the database and bodies are capped (trimloop.api.limits).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from trimloop.api import errors
from trimloop.api.auth import LoginLimiter, Reader
from trimloop.api.limits import BodyLimit, Turns
from trimloop.api.routes import (audit, connectors, datasets, doctor, health, models, otlp, prompts, reports, runs,
                                 suggestions, tokens)
from trimloop.api.executor import real_gateway
from trimloop.api.runner import RunScheduler
from trimloop.api.scheduler import HostedPasses, hosting
from trimloop.api.ui import routes as ui
from trimloop.core.db import get_engine, upgrade
from trimloop.core.settings import Settings, load_settings
from trimloop.core.tables import utcnow

DESCRIPTION = """\
trimloop proposes cheaper, faster versions of your LLM prompts with statistical proof that
quality holds. Authenticate with `Authorization: Bearer <token>` (`trimloop tokens create`).

Roles: **viewer** reads; **reviewer** also approves and rejects; **engineer** also runs, syncs
and deploys; **admin** does everything, including tokens; **ingest** only sends spans to
`POST /v1/traces` (OTLP/HTTP). Errors always have the body
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
    {"name": "doctor", "description": "setup checks, each with its fix (`trimloop doctor`)"},
    {"name": "models", "description": "configured models, prices per token class and their sources"},
    {"name": "ingest", "description": "OTLP/HTTP spans from your app's OpenTelemetry exporter (role ingest)"},
    {"name": "health", "description": "liveness"},
]


def create_app(settings: Settings | None = None, engine: Engine | None = None, gateway: Any | None = None, *,
               scheduler: bool = False, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """The API over `engine` (default: the settings' database, migrated to the newest schema). With
    `scheduler`, the scheduler runs while the app is served: a pass at once, then every
    `scheduler.interval_minutes`; stopping the app cancels a pass in flight. `clock` is what the
    pages count days to a model's retirement from (tests set it)."""
    settings = settings or load_settings()
    if engine is None:
        upgrade(settings.db_url)
        engine = get_engine(settings)
    starter = None
    if gateway is None and scheduler:  # runs and passes share it (RunScheduler alone makes its own when needed)
        gateway, starter = real_gateway(settings, engine)
    run_scheduler = RunScheduler(engine=engine, settings=settings, gateway=gateway)
    passes = HostedPasses(engine=engine, settings=settings, gateway=gateway) if scheduler else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with AsyncExitStack() as hosted:
                if passes is not None:
                    await hosted.enter_async_context(hosting(passes))
                # worker threads for sync routes, sized with the pool: a turn's request uses one at a
                # time, so threads never run out while requests holding connections wait for one
                limiter = anyio.to_thread.current_default_thread_limiter()
                limiter.total_tokens = max(limiter.total_tokens, 2 * settings.api.concurrent_requests + 8)
                try:
                    yield
                finally:
                    await run_scheduler.close()
        finally:
            if starter is not None:
                try:
                    await gateway.aclose()
                finally:
                    await asyncio.to_thread(starter.stop)

    app = FastAPI(title="trimloop", version="0.1.0", description=DESCRIPTION, openapi_tags=TAGS,
                  lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings, app.state.engine, app.state.runs, app.state.passes = settings, engine, run_scheduler, passes
    app.state.clock = clock
    app.state.login_limiter = LoginLimiter(engine, settings.api.failed_logins_per_minute)
    app.state.turns = Turns(settings.api.concurrent_requests, settings.api.queue_timeout_s)
    app.state.ingest = otlp.IngestQueue(settings.api.ingest_queue)
    app.add_middleware(BodyLimit, api_bytes=settings.api.max_body_bytes, form_bytes=settings.api.max_form_bytes,
                       pause_s=settings.api.body_timeout_s)
    errors.install(app)
    app.include_router(health.router)
    for module in (prompts, connectors, datasets, runs, suggestions, reports, audit, tokens, doctor, models, otlp):
        app.include_router(module.router, responses=errors.ERROR_RESPONSES)
    ui.install(app)

    @app.get("/openapi.json", include_in_schema=False, responses=errors.ERROR_RESPONSES)
    def openapi_document(_: Reader) -> dict[str, Any]:
        """The OpenAPI document, behind a token like everything but /health."""
        return app.openapi()

    return app
