"""Runs in the background: POST /runs claims the new run for this server (`optimizer.queue`) and
executes it with heartbeats, so a `trimloop worker` never runs it twice; a run this server cannot
claim (another run of the prompt is live) stays queued for a worker.

Each run executes on a thread of its own, with its own event loop and gateway (over the server's
model starter): the optimizer writes to the database synchronously, and on the server's loop a
write waiting for SQLite's lock would stall every request (measured by bench/soak.py: 60 s
stalls, then "database is locked"). Stopping the server cancels the run's task on its loop; the
heartbeat goes stale and a worker resumes it.

After a run ends, the webhooks hear `suggestion.created` for each new suggestion or `run.failed`.
A run whose task dies unexpectedly is marked failed with the reason, so it never hangs `running`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
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
CLOSE_WAIT_S = 30.0  # how long a stopping server waits for its runs' threads to unwind


class RunScheduler:
    """Starts runs as asyncio tasks and keeps them referenced until they end."""

    def __init__(self, *, engine: Engine, settings: Settings, gateway: Any | None = None):
        self.engine, self.settings, self.gateway = engine, settings, gateway
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.worker: str | None = None
        self._lock = threading.Lock()
        self._running: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = {}  # on run threads
        self._threads: dict[int, threading.Thread] = {}
        self._closing = False

    def schedule(self, run_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._execute(run_id), name=f"run-{run_id}")
        self.tasks[run_id] = task
        task.add_done_callback(lambda _: self.tasks.pop(run_id, None))

    async def wait(self, run_id: int) -> None:
        task = self.tasks.get(run_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Cancel the runs in flight and wait (bounded) until their threads have unwound, so none
        still holds a database connection or a model call when the server is gone."""
        with self._lock:
            self._closing = True
            running = list(self._running.values())
            threads = list(self._threads.values())
        for loop, task in running:
            loop.call_soon_threadsafe(task.cancel)
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        deadline = time.monotonic() + wait_s
        for thread in threads:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s is still unwinding; its run resumes on the next worker", thread.name)

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
            await self._on_own_thread(run_id, execute_claimed)
        except asyncio.CancelledError:
            raise  # the server is stopping: the run's heartbeat goes stale and a worker resumes it
        except Exception as exc:  # the run's own failure handling missed it: never leave it running
            log.exception("run %s crashed", run_id)
            await asyncio.to_thread(self._fail, run_id, f"{exc.__class__.__name__}: {exc}")
        await self._announce(run_id)

    async def _on_own_thread(self, run_id: int, execute_claimed: Any) -> None:
        """Execute the claimed run on a daemon thread with its own loop and gateway; wait for it."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        shared = self._gateway()
        worker = self.worker

        async def execute() -> None:
            task = asyncio.current_task()
            assert task is not None
            with self._lock:
                if self._closing:  # the server stopped first: the run stays claimed and resumes later
                    return
                self._running[run_id] = (asyncio.get_running_loop(), task)
            gateway = shared.for_another_loop() if hasattr(shared, "for_another_loop") else shared
            try:
                await execute_claimed(engine=self.engine, settings=self.settings, run_id=run_id,
                                      gateway=gateway, worker=worker)
            finally:
                with self._lock:
                    self._running.pop(run_id, None)
                if gateway is not shared:
                    await gateway.aclose()

        def settle(error: BaseException | None) -> None:
            if finished.done():
                return
            if error is None:
                finished.set_result(None)
            else:
                finished.set_exception(error)

        def thread() -> None:
            error: BaseException | None = None
            try:
                asyncio.run(execute())
            except asyncio.CancelledError:
                error = asyncio.CancelledError()
            except BaseException as exc:  # handed to the server's loop, which marks the run failed
                error = exc
            finally:
                with self._lock:
                    self._threads.pop(run_id, None)
            try:
                loop.call_soon_threadsafe(settle, error)
            except RuntimeError:  # the server's loop is closed: it stopped while the run unwound
                pass

        runner = threading.Thread(target=thread, name=f"trimloop-run-{run_id}", daemon=True)
        with self._lock:
            self._threads[run_id] = runner
        runner.start()
        await finished

    def _fail(self, run_id: int, error: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(update(OptimizationRun).where(
                OptimizationRun.id == run_id, col(OptimizationRun.status).in_(RUN_ACTIVE)).values(
                status="failed", error=error, finished_at=utcnow()))

    async def _announce(self, run_id: int) -> None:
        await webhooks.announce_run(engine=self.engine, settings=self.settings, run_id=run_id)
