"""The scheduled loop: sync every connector, check every prompt's health (a `prompt.unhealthy`
notification per change to degraded or broken), queue a run for each due prompt (never a cost
search of a broken one; with `scheduler.repair`, a repair run on its own budget instead), claim
and execute them.

`Worker.run_pass` is one pass (what `trimloop worker --once` does). `build_scheduler` wraps it in
an APScheduler 3 BackgroundScheduler whose job store is the trimloop database, with one job that
repeats every `scheduler.interval_minutes`. Several workers may share one PostgreSQL database:
`optimizer.queue` guarantees that a prompt is optimized by one of them at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from trimloop.api import services, webhooks
from trimloop.api.executor import Closed, OwnLoops, real_gateway
from trimloop.connectors.sync import SyncReport
from trimloop.core.db import session_scope
from trimloop.core.errors import Conflict, TrimloopError
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, utcnow
from trimloop.optimizer.due import DueDecision, due_prompts
from trimloop.optimizer.queue import claim_next, execute_claimed, worker_id

log = logging.getLogger("trimloop.api.scheduler")
JOB_ID = "trimloop-pass"
JOBS_TABLE = "trimloop_scheduler_jobs"
ORPHAN_AFTER = timedelta(minutes=5)  # a queued run nobody started for this long is any worker's to take
ACTOR = "scheduler"  # who the audit log says queued the pass's runs and closed stale suggestions


@dataclass
class PassReport:
    """What one pass did: per-connector syncs, suggestions superseded or expired, health verdicts
    (and the ones that changed), due decisions, runs queued and executed."""

    synced: list[SyncReport] = field(default_factory=list)
    health: dict[int, str] = field(default_factory=dict)  # prompt id → verdict
    health_changes: list[webhooks.HealthChange] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    decisions: list[DueDecision] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    executed: list[OptimizationRun] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)  # model.retiring notices sent
    swept: dict[str, Any] = field(default_factory=dict)  # the retention sweep (core.reservoir.SweepReport)

    def to_dict(self) -> dict[str, Any]:
        return {
            "synced": [r.to_dict() for r in self.synced],
            "superseded": self.superseded,
            "expired": self.expired,
            "health": {str(k): v for k, v in self.health.items()},
            "health_changes": [{"prompt_id": c.prompt_id, "prompt": c.prompt, "before": c.before, "after": c.after}
                               for c in self.health_changes],
            "decisions": [{"prompt_id": d.prompt_id, "prompt": d.prompt_name, "due": d.due, "reason": d.reason,
                           "code": d.code, "deadline": d.deadline.isoformat() if d.deadline else None}
                          for d in self.decisions],
            "notified": self.notified,
            "swept": self.swept,
            "queued": self.queued,
            "executed": [{"run_id": r.id, "prompt_id": r.prompt_id, "status": r.status, "calls": r.calls_made,
                          "spent": r.spent_dollars, "suggestion_id": r.results.suggestion_id,
                          "note": r.results.no_suggestion or r.error,
                          "outcome": r.results.outcome(r.status, r.error)} for r in self.executed],
        }


class Worker:
    """Runs passes of sync → due → queue → notify retirements → claim → execute with one gateway and one identity."""

    def __init__(self, *, engine: Engine, settings: Settings, gateway: Any, name: str | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.engine, self.settings, self.gateway = engine, settings, gateway
        self.name = name or worker_id()
        self.clock = clock

    async def run_pass(self, *, do_sync: bool = True, max_runs: int | None = None) -> PassReport:
        """One pass; `max_runs` bounds how many runs it executes (default: all it can claim)."""
        report = PassReport()
        synced = await asyncio.to_thread(services.sync, engine=self.engine, settings=self.settings, actor=ACTOR,
                                         pull=do_sync and bool(self.settings.connectors), now=self.clock())
        report.synced, report.superseded, report.expired = synced.reports, synced.superseded, synced.expired
        swept = await asyncio.to_thread(services.sweep, engine=self.engine, settings=self.settings, now=self.clock())
        report.swept = swept.to_dict()
        if synced.superseded or synced.expired:
            log.info("suggestions superseded: %s; expired: %s", synced.superseded, synced.expired)
        health = await asyncio.to_thread(services.check_health, engine=self.engine, settings=self.settings,
                                         now=self.clock())
        report.health = {pid: r.verdict for pid, r in health.reports.items()}
        report.health_changes = health.changes
        await webhooks.announce_health(engine=self.engine, settings=self.settings, changes=health.changes)
        report.decisions, report.queued = await asyncio.to_thread(self._queue_due)
        report.notified = [n["summary"] for n in
                           await webhooks.announce_retirements(engine=self.engine, settings=self.settings,
                                                               now=self.clock())]
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

    def _queue_due(self) -> tuple[list[DueDecision], list[int]]:
        now = self.clock()
        with session_scope(self.engine) as session:
            decisions = due_prompts(session, self.settings, now=now)
        queued = []
        for d in decisions:
            if not d.due:
                continue
            # A repair run has its own budget (scheduler.repair_budget_*), never the prompt's cost search's.
            extra = ({"config": {"repair": True}, "budget_calls": self.settings.scheduler.repair_budget_calls,
                      "budget_dollars": self.settings.scheduler.repair_budget_dollars} if d.repair else {})
            try:
                run_id = services.start_run(engine=self.engine, settings=self.settings, prompt_id=d.prompt_id,
                                            actor=ACTOR, reason=d.reason, now=now, **extra)
            except Conflict:  # another worker queued it first
                continue
            except TrimloopError as exc:  # busy database, options broken since the decision: the next pass tries again
                log.warning("prompt %s not queued: %s", d.prompt_name, exc.message)
                continue
            queued.append(run_id)
        return decisions, queued


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
# its own event loop and gateway (`executor.OwnLoops.run_here`), as `trimloop worker` does, so a
# pass that waits on the database never blocks the server's loop. The server's runs and its passes
# share one model starter: a bundled model is started once, by whichever needs it first, and
# stopped when the server stops. Passes and the runs `POST /runs` executes never fight over a
# prompt: `optimizer.queue` allows one run per prompt, the API claims the runs it queues at once,
# and a pass claims only the runs it queued, orphans queued more than `ORPHAN_AFTER` ago, and stale
# running ones. Stopping the server cancels a pass in flight like the API's own runs: the run's
# heartbeat goes stale and the next worker resumes it.


class HostedPasses:
    """Scheduler passes inside the server: each on the scheduler's thread, on a loop of its own."""

    def __init__(self, *, engine: Engine, settings: Settings, gateway: Any):
        self.engine, self.settings = engine, settings
        self.loops = OwnLoops(gateway, what="scheduler pass")
        self.passes = 0

    def run(self) -> None:
        """One pass (the scheduler calls this on its thread); nothing once the server is stopping."""
        try:
            report = self.loops.run_here(
                lambda gateway: Worker(engine=self.engine, settings=self.settings, gateway=gateway).run_pass())
        except (Closed, asyncio.CancelledError):
            log.info("pass cancelled: the server is stopping")
            return
        self.passes += 1
        log.info("pass done: %s", report.to_dict())

    async def close(self) -> None:
        """No more passes; cancel the one in flight and wait (bounded) until it has unwound."""
        await self.loops.close()


_HOSTED: HostedPasses | None = None


def hosted_pass() -> None:
    """The scheduler job of `trimloop serve`: a pass inside the server; in another process that
    finds this job in the shared job store, the plain `scheduled_pass`."""
    host = _HOSTED
    if host is None:
        scheduled_pass()
        return
    host.run()


@asynccontextmanager
async def hosting(host: HostedPasses) -> AsyncIterator[None]:
    """The scheduler runs while the server does: it starts with it (a pass at once) and on
    shutdown stops, cancelling a pass in flight."""
    global _HOSTED
    _HOSTED = host
    jobs = build_scheduler(engine=host.engine, settings=host.settings, job=hosted_pass)
    jobs.start()
    log.info("scheduler started: a pass now, then every %g minutes", host.settings.scheduler.interval_minutes)
    try:
        yield
    finally:
        jobs.shutdown(wait=False)
        await host.close()
        if _HOSTED is host:
            _HOSTED = None
        log.info("scheduler stopped")
