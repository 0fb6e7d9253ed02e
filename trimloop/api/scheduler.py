"""The scheduled loop: sync every connector, queue a run for each due prompt, claim and execute them.

`Worker.run_pass` is one pass (what `trimloop worker --once` does). `build_scheduler` wraps it in
an APScheduler 3 BackgroundScheduler whose job store is the trimloop database, with one job that
repeats every `scheduler.interval_minutes`. Several workers may share one PostgreSQL database:
`optimizer.queue` guarantees that a prompt is optimized by one of them at a time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from trimloop.api import webhooks
from trimloop.connectors.sync import SyncReport, sync
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.errors import Busy
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, utcnow
from trimloop.optimizer.due import DueDecision, candidate_prices, due_prompts, record_candidates
from trimloop.optimizer.queue import claim_next, enqueue, execute_claimed, worker_id

log = logging.getLogger("trimloop.api.scheduler")
JOB_ID = "trimloop-pass"
JOBS_TABLE = "trimloop_scheduler_jobs"
ORPHAN_AFTER = timedelta(minutes=5)  # a queued run nobody started for this long is any worker's to take


@dataclass
class PassReport:
    """What one pass did: per-connector syncs, suggestions superseded or expired, due decisions,
    runs queued and executed."""

    synced: list[SyncReport] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    decisions: list[DueDecision] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    executed: list[OptimizationRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "synced": [r.to_dict() for r in self.synced],
            "superseded": self.superseded,
            "expired": self.expired,
            "decisions": [{"prompt_id": d.prompt_id, "prompt": d.prompt_name, "due": d.due, "reason": d.reason}
                          for d in self.decisions],
            "queued": self.queued,
            "executed": [{"run_id": r.id, "prompt_id": r.prompt_id, "status": r.status, "calls": r.calls_made,
                          "spent": r.spent_dollars, "suggestion_id": r.results.suggestion_id,
                          "note": r.results.no_suggestion or r.error} for r in self.executed],
        }


class Worker:
    """Runs passes of sync → due → queue → claim → execute with one gateway and one identity."""

    def __init__(self, *, engine: Engine, settings: Settings, gateway: Any, name: str | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.engine, self.settings, self.gateway = engine, settings, gateway
        self.name = name or worker_id()
        self.clock = clock

    async def run_pass(self, *, do_sync: bool = True, max_runs: int | None = None) -> PassReport:
        """One pass; `max_runs` bounds how many runs it executes (default: all it can claim)."""
        report = PassReport()
        if do_sync and self.settings.connectors:
            report.synced = await asyncio.to_thread(sync, engine=self.engine, settings=self.settings)
        report.superseded, report.expired = await asyncio.to_thread(self._close_stale)
        report.decisions, report.queued = await asyncio.to_thread(self._queue_due)
        stale_after = timedelta(minutes=self.settings.scheduler.stale_after_minutes)
        while max_runs is None or len(report.executed) < max_runs:
            run_id = await asyncio.to_thread(claim_next, self.engine, worker=self.name, now=self.clock(),
                                             stale_after=stale_after, queued_older_than=ORPHAN_AFTER,
                                             only=report.queued)
            if run_id is None:
                break
            log.info("worker %s executes run %s", self.name, run_id)
            run = await execute_claimed(engine=self.engine, settings=self.settings, run_id=run_id,
                                        gateway=self.gateway, worker=self.name, now=self.clock())
            report.executed.append(run)
            await webhooks.announce_run(engine=self.engine, settings=self.settings, run_id=run_id)
        return report

    def _close_stale(self) -> tuple[list[int], list[int]]:
        """Open suggestions whose baseline left production become `superseded`; pending ones older
        than scheduler.expire_pending_after_days become `expired`. Either way the prompt stops
        waiting on them and can be due again."""
        max_age = timedelta(days=self.settings.scheduler.expire_pending_after_days)
        with session_scope(self.engine) as session:
            superseded = store.supersede_stale(session=session, actor="scheduler")
            expired = store.expire_stale(session=session, now=self.clock(), max_age=max_age, actor="scheduler")
        if superseded or expired:
            log.info("suggestions superseded: %s; expired: %s", superseded, expired)
        return superseded, expired

    def _queue_due(self) -> tuple[list[DueDecision], list[int]]:
        now = self.clock()
        with session_scope(self.engine) as session:
            decisions = due_prompts(session, self.settings, now=now)
        queued = []
        for d in decisions:
            if not d.due:
                continue
            try:
                run_id = enqueue(self.engine, prompt_id=d.prompt_id, reason=d.reason)
            except Busy as exc:  # the next pass tries again
                log.warning("prompt %s not queued: %s", d.prompt_name, exc.message)
                continue
            if run_id is None:  # another worker queued it first
                continue
            with session_scope(self.engine) as session:
                record_candidates(session, run_id=run_id, prices=candidate_prices(self.settings, d.prompt_name))
            queued.append(run_id)
        return decisions, queued


def real_gateway(settings: Settings, engine: Engine) -> tuple[Any, Any]:
    """The real gateway with the database cache, and the LazyStarter to stop when done."""
    from trimloop.core.gateway import Gateway
    from trimloop.core.local_models import LazyStarter

    starter = LazyStarter(settings)
    return Gateway(settings, engine=engine, before_first_call=starter), starter


def scheduled_pass() -> None:
    """The APScheduler job (a module-level function, so the database job store can name it)."""
    from trimloop.core.db import get_engine, upgrade
    from trimloop.core.settings import load_settings

    settings = load_settings()
    upgrade(settings.db_url)
    engine = get_engine(settings)
    gateway, starter = real_gateway(settings, engine)

    async def once() -> PassReport:
        try:
            return await Worker(engine=engine, settings=settings, gateway=gateway).run_pass()
        finally:
            await gateway.aclose()

    try:
        report = asyncio.run(once())
        log.info("pass done: %s", report.to_dict())
    finally:
        starter.stop()


def build_scheduler(*, engine: Engine, settings: Settings, job: Callable[[], None] | str = scheduled_pass,
                    run_now: bool = True) -> Any:
    """A BackgroundScheduler (not started) with its job store in the trimloop database and one job."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)},
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": max(1, int(settings.scheduler.interval_minutes * 60))},
        timezone="UTC",
    )
    first = {"next_run_time": utcnow()} if run_now else {}  # None would add the job paused
    scheduler.add_job(job, "interval", minutes=settings.scheduler.interval_minutes, id=JOB_ID,
                      name="sync, then optimize due prompts", replace_existing=True, **first)
    return scheduler


# ---------------------------------------------------------------------------------------------
# `trimloop serve`: the scheduler inside the API server's process.
#
# The BackgroundScheduler keeps the job in the database and runs each pass on its own thread, with
# its own event loop and gateway, as `trimloop worker` does, so a pass that waits on the database
# never blocks the server's loop. The server and its passes share one `SharedStarter`: a bundled
# model is started once, by whichever needs it first, and stopped when the server stops. Passes and
# the runs `POST /runs` executes never fight over a prompt: `optimizer.queue` allows one run per
# prompt, the API claims the runs it queues at once, and a pass claims only the runs it queued,
# orphans queued more than `ORPHAN_AFTER` ago, and stale running ones. Stopping the server cancels
# a pass in flight like the API's own runs: the run's heartbeat goes stale and the next worker
# resumes it.

CLOSE_WAIT_S = 30.0  # how long a stopping server waits for a cancelled pass to unwind


class SharedStarter:
    """A `LazyStarter` that the server's loop and the scheduler's thread may call at once."""

    def __init__(self, starter: Any):
        self.starter, self._lock = starter, threading.Lock()

    def __call__(self, model_id: str) -> None:
        with self._lock:
            self.starter(model_id)

    def stop(self) -> None:
        with self._lock:
            self.starter.stop()


def shared_gateway(settings: Settings, engine: Engine) -> tuple[Any, SharedStarter]:
    """The server's gateway and the starter it shares with the scheduler's passes."""
    from trimloop.core.gateway import Gateway
    from trimloop.core.local_models import LazyStarter

    starter = SharedStarter(LazyStarter(settings))
    return Gateway(settings, engine=engine, before_first_call=starter), starter


class HostedPasses:
    """Scheduler passes inside the server: each on the scheduler's thread with a fresh gateway."""

    def __init__(self, *, engine: Engine, settings: Settings, gateway_factory: Callable[[], Any]):
        self.engine, self.settings, self.gateway_factory = engine, settings, gateway_factory
        self.passes = 0
        self._lock = threading.Lock()
        self._closed = False
        self._inflight: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
        self._idle = threading.Event()
        self._idle.set()

    def run(self) -> None:
        """One pass (the scheduler calls this on its thread); nothing once the server is stopping."""
        with self._lock:
            if self._closed:
                return
            self._idle.clear()
        try:
            report = asyncio.run(self._pass())
        finally:
            self._idle.set()
        if report is None:
            log.info("pass cancelled: the server is stopping")
            return
        self.passes += 1
        log.info("pass done: %s", report.to_dict())

    async def _pass(self) -> PassReport | None:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            if self._closed:
                return None
            self._inflight = (asyncio.get_running_loop(), task)
        gateway = self.gateway_factory()
        try:
            return await Worker(engine=self.engine, settings=self.settings, gateway=gateway).run_pass()
        except asyncio.CancelledError:
            return None
        finally:
            with self._lock:
                self._inflight = None
            await gateway.aclose()

    async def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """No more passes; cancel the one in flight and wait (bounded) until it has unwound."""
        with self._lock:
            self._closed = True
            inflight = self._inflight
        if inflight is not None:
            loop, task = inflight
            loop.call_soon_threadsafe(task.cancel)
        if not await asyncio.to_thread(self._idle.wait, wait_s):
            log.warning("a scheduler pass is still unwinding; its run resumes on the next worker")


_HOSTED: HostedPasses | None = None


def hosted_pass() -> None:
    """The scheduler job of `trimloop serve`: a pass inside the server; in another process that
    finds this job in the shared job store, the plain `scheduled_pass`."""
    host = _HOSTED
    if host is None:
        scheduled_pass()
        return
    host.run()


def serve_lifespan(app: Any, *, engine: Engine, settings: Settings, gateway: Any, starter: Any = None,
                   scheduler: bool = True, pass_gateway: Callable[[], Any] | None = None) -> HostedPasses | None:
    """Wrap the app's lifespan for `trimloop serve`. With `scheduler`, the scheduler runs while the
    app is served: it starts with the server (a pass at once) and on shutdown stops, cancelling a
    pass in flight. Each pass gets `pass_gateway()` (default: a gateway over `starter`). Either way
    the server's `gateway` is closed on shutdown and the bundled models `starter` started are stopped.
    Returns the host of the passes (None without the scheduler)."""
    from trimloop.core.gateway import Gateway

    def default_pass_gateway() -> Any:
        return Gateway(settings, engine=engine, before_first_call=starter)

    host = (HostedPasses(engine=engine, settings=settings, gateway_factory=pass_gateway or default_pass_gateway)
            if scheduler else None)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(served: Any) -> AsyncIterator[Any]:
        global _HOSTED
        try:
            async with inner(served) as state:
                if host is None:
                    yield state
                    return
                _HOSTED = host
                jobs = build_scheduler(engine=engine, settings=settings, job=hosted_pass)
                jobs.start()
                log.info("scheduler started: a pass now, then every %g minutes", settings.scheduler.interval_minutes)
                try:
                    yield state
                finally:
                    jobs.shutdown(wait=False)
                    await host.close()
                    if _HOSTED is host:
                        _HOSTED = None
                    log.info("scheduler stopped")
        finally:
            try:
                await gateway.aclose()
            finally:
                if starter is not None:
                    await asyncio.to_thread(starter.stop)

    app.router.lifespan_context = lifespan
    return host
