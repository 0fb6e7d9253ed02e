"""Runs in the background: POST /runs claims the new run for this server (`optimizer.queue`) and
executes it on the server's loop with heartbeats, so a `trimloop worker` never runs it twice; a
run this server cannot claim (another run of the prompt is live) stays queued for a worker.

After a run ends, the webhooks hear `suggestion.created` for each new suggestion or `run.failed`.
A run whose task dies unexpectedly is marked failed with the reason, so it never hangs `running`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from trimloop.api import webhooks
from trimloop.core.db import session_scope
from trimloop.core.settings import Settings
from trimloop.core.store import RUN_ACTIVE
from trimloop.core.tables import OptimizationRun, utcnow

log = logging.getLogger("trimloop.api.runner")


class RunScheduler:
    """Starts runs as asyncio tasks and keeps them referenced until they end."""

    def __init__(self, *, engine: Engine, settings: Settings, gateway: Any | None = None):
        self.engine, self.settings, self.gateway = engine, settings, gateway
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.worker: str | None = None

    def schedule(self, run_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(run_id), name=f"run-{run_id}")
        self.tasks[run_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(run_id, None))

    async def wait(self, run_id: int) -> None:
        task = self.tasks.get(run_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def _gateway(self) -> Any:
        if self.gateway is None:
            from trimloop.core.gateway import Gateway
            from trimloop.core.local_models import LazyStarter

            self.gateway = Gateway(self.settings, engine=self.engine, before_first_call=LazyStarter(self.settings))
        return self.gateway

    async def _execute(self, run_id: int) -> None:
        try:  # the optimizer is a sibling package that may be absent from a slim install
            from trimloop.optimizer.queue import claim_run, execute_claimed, worker_id
        except ImportError as exc:
            await asyncio.to_thread(self._fail, run_id, f"the optimizer is not available: {exc}")
            await self._announce(run_id)
            return
        self.worker = self.worker or f"api:{worker_id()}"
        if not await asyncio.to_thread(claim_run, self.engine, run_id=run_id, worker=self.worker):
            return  # cancelled already, or another run of this prompt is live: a worker takes it later
        try:
            await execute_claimed(engine=self.engine, settings=self.settings, run_id=run_id,
                                  gateway=self._gateway(), worker=self.worker)
        except asyncio.CancelledError:
            raise  # the server is stopping: the run's heartbeat goes stale and a worker resumes it
        except Exception as exc:  # the run's own failure handling missed it: never leave it running
            log.exception("run %s crashed", run_id)
            await asyncio.to_thread(self._fail, run_id, f"{exc.__class__.__name__}: {exc}")
        await self._announce(run_id)

    def _fail(self, run_id: int, error: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(update(OptimizationRun).where(
                OptimizationRun.id == run_id, col(OptimizationRun.status).in_(RUN_ACTIVE)).values(
                status="failed", error=error, finished_at=utcnow()))

    async def _announce(self, run_id: int) -> None:
        await webhooks.announce_run(engine=self.engine, settings=self.settings, run_id=run_id)
