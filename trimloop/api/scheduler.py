"""The scheduled loop: sync every connector, queue a run for each due prompt, claim and execute them.

`Worker.run_pass` is one pass (what `trimloop worker --once` does). `build_scheduler` wraps it in
an APScheduler 3 BackgroundScheduler whose job store is the trimloop database, with one job that
repeats every `scheduler.interval_minutes`. Several workers may share one PostgreSQL database:
`optimizer.queue` guarantees that a prompt is optimized by one of them at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from trimloop.connectors.sync import SyncReport, sync
from trimloop.core.db import session_scope
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
    """What one pass did: per-connector syncs, due decisions, runs queued and executed."""

    synced: list[SyncReport] = field(default_factory=list)
    decisions: list[DueDecision] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    executed: list[OptimizationRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "synced": [r.to_dict() for r in self.synced],
            "decisions": [{"prompt_id": d.prompt_id, "prompt": d.prompt_name, "due": d.due, "reason": d.reason}
                          for d in self.decisions],
            "queued": self.queued,
            "executed": [{"run_id": r.id, "prompt_id": r.prompt_id, "status": r.status, "calls": r.calls_made,
                          "spent": r.spent_dollars, "suggestion_id": (r.results or {}).get("suggestion_id"),
                          "note": (r.results or {}).get("no_suggestion") or r.error} for r in self.executed],
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
        return report

    def _queue_due(self) -> tuple[list[DueDecision], list[int]]:
        now = self.clock()
        with session_scope(self.engine) as session:
            decisions = due_prompts(session, self.settings, now=now)
        queued = []
        for d in decisions:
            if not d.due:
                continue
            run_id = enqueue(self.engine, prompt_id=d.prompt_id, reason=d.reason)
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
                      "misfire_grace_time": int(settings.scheduler.interval_minutes * 60)},
        timezone="UTC",
    )
    first = {"next_run_time": utcnow()} if run_now else {}  # None would add the job paused
    scheduler.add_job(job, "interval", minutes=settings.scheduler.interval_minutes, id=JOB_ID,
                      name="sync, then optimize due prompts", replace_existing=True, **first)
    return scheduler
