"""Runs in the background: POST /runs claims the new run for this server (`optimizer.queue`) and
executes it with heartbeats, so a `trimloop worker` never runs it twice; a run this server cannot
claim (another run of the prompt is live) stays queued for a worker.

Each run executes on a thread of its own, with its own event loop and gateway (`executor.OwnLoops`,
over the server's model starter). Stopping the server cancels the run's task on its loop; the
heartbeat goes stale and a worker resumes it.

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
from trimloop.api.executor import CLOSE_WAIT_S, Closed, OwnLoops, real_gateway
from trimloop.core.db import session_scope
from trimloop.core.settings import Settings
from trimloop.core.store import RUN_ACTIVE
from trimloop.core.tables import OptimizationRun, utcnow

log = logging.getLogger("trimloop.api.runner")


class RunScheduler:
    """Starts runs as asyncio tasks on the server's loop, executes each on a loop of its own
    (`executor.OwnLoops`), and keeps the tasks referenced until they end.

    With no `gateway`, the real one (`executor.real_gateway`, made at the first run), whose bundled
    models stop on close."""

    def __init__(self, *, engine: Engine, settings: Settings, gateway: Any | None = None):
        self.engine, self.settings, self.gateway = engine, settings, gateway
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.worker: str | None = None
        self._starter: Any = None
        self._loops: OwnLoops | None = None

    def loops(self) -> OwnLoops:
        if self._loops is None:
            if self.gateway is None:
                self.gateway, self._starter = real_gateway(self.settings, self.engine)
            self._loops = OwnLoops(self.gateway, what="API run")
        return self._loops

    def schedule(self, run_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(run_id), name=f"run-{run_id}")
        self.tasks[run_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(run_id, None))

    async def wait(self, run_id: int) -> None:
        task = self.tasks.get(run_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Cancel the runs in flight and wait (bounded) until their threads have unwound."""
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self._loops is not None:
            await self._loops.close(wait_s)
        if self._starter is not None:
            await self.gateway.aclose()
            await asyncio.to_thread(self._starter.stop)

    async def _execute(self, run_id: int) -> None:
        try:  # the optimizer is a sibling package that may be absent from a slim install
            from trimloop.optimizer.queue import claim_run, execute_claimed, worker_id
        except ImportError as exc:
            await asyncio.to_thread(self._fail, run_id, f"the optimizer is not available: {exc}")
            await self._announce(run_id)
            return
        self.worker = self.worker or f"api:{worker_id()}"
        worker = self.worker
        if not await asyncio.to_thread(claim_run, self.engine, run_id=run_id, worker=worker):
            return  # cancelled already, or another run of this prompt is live: a worker takes it later

        async def execute(gateway: Any) -> None:
            await execute_claimed(engine=self.engine, settings=self.settings, run_id=run_id, gateway=gateway,
                                  worker=worker)

        try:
            await self.loops().run(execute, name=f"trimloop-run-{run_id}")
        except (asyncio.CancelledError, Closed):
            raise asyncio.CancelledError() from None  # the server is stopping: a worker resumes the run
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
