"""One run per prompt at a time, across processes: enqueue, claim, heartbeat, reclaim.

A worker claims a run with one conditional UPDATE (`status='queued'`, or `running` with a
heartbeat older than `stale_after`), refused while another run of the same prompt is running with
a fresh heartbeat. Enqueue and claim first write the prompt's row (a no-op UPDATE), which locks it
on PostgreSQL and takes the write lock on SQLite, so two workers busy with one prompt serialize.
A reclaimed stale run is simply executed again: the
gateway's response cache makes the repeated calls free.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from trimloop.core.db import session_scope
from trimloop.core.errors import Busy, Conflict
from trimloop.core.store import RUN_ACTIVE
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, Prompt, RunEvent, utcnow
from trimloop.optimizer.run import create_run, execute_run

DEFAULT_STALE = timedelta(minutes=10)


def worker_id() -> str:
    """host:pid:random, so two workers on one host (or a restarted one) never look alike."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _lock_prompt(session: Session, prompt_id: int) -> None:
    """Serialize work on one prompt: a no-op write locks its row (PostgreSQL) or the database (SQLite,
    whose driver would otherwise run the check's SELECT outside the transaction) until commit."""
    session.execute(update(Prompt).where(col(Prompt.id) == prompt_id).values(name=Prompt.name))


def enqueue(engine: Engine, *, prompt_id: int, config: dict | None = None, budget_calls: int | None = None,
            budget_dollars: float | None = None, reason: str = "",
            also: Callable[[Session, OptimizationRun], None] | None = None) -> int | None:
    """Queue a run for the prompt; None when another run of it is already queued or running.

    `also(session, run)` writes what belongs with the new run (its candidate fingerprint, the
    audit entry) in the same transaction, under the prompt's lock."""
    try:
        with session_scope(engine) as session:
            _lock_prompt(session, prompt_id)
            run = create_run(session=session, prompt_id=prompt_id, config=config, budget_calls=budget_calls,
                             budget_dollars=budget_dollars)
            if reason:
                session.add(RunEvent(run_id=run.id, kind="run.scheduled", data={"reason": reason}))
            if also is not None:
                also(session, run)
            return run.id
    except Conflict:
        return None
    except OperationalError as exc:  # SQLite: another writer held the database past the busy timeout
        if "locked" not in str(exc):
            raise
        with session_scope(engine) as session:  # did that writer queue a run of this prompt?
            active = session.exec(select(OptimizationRun.id).where(
                OptimizationRun.prompt_id == prompt_id, col(OptimizationRun.status).in_(RUN_ACTIVE))).first()
        if active is not None:
            return None
        raise Busy("the database was busy with another write, so no run was queued",
                   where=f"queueing a run of prompt {prompt_id}",
                   hint="try again; with several workers and a busy API, use PostgreSQL") from exc


def _fresh_elsewhere(run_id: int, prompt_id: int, cutoff: datetime):  # type: ignore[no-untyped-def]
    other = aliased(OptimizationRun)
    return exists().where(other.prompt_id == prompt_id, other.id != run_id, other.status == "running",
                          other.heartbeat_at.isnot(None), other.heartbeat_at >= cutoff)  # type: ignore[union-attr]


def claim_run(engine: Engine, *, run_id: int, worker: str, now: datetime | None = None,
              stale_after: timedelta = DEFAULT_STALE) -> bool:
    """Take a queued (or stale running) run for `worker`; True when this call won it."""
    now = now or utcnow()
    cutoff = now - stale_after
    with session_scope(engine) as session:
        row = session.exec(select(OptimizationRun.prompt_id, OptimizationRun.status, OptimizationRun.worker)
                           .where(OptimizationRun.id == run_id)).first()
    if row is None:
        return False
    prompt_id, status_before, worker_before = row
    try:
        with session_scope(engine) as session:
            _lock_prompt(session, prompt_id)
            claimable = or_(OptimizationRun.status == "queued",
                            and_(OptimizationRun.status == "running",
                                 or_(col(OptimizationRun.heartbeat_at).is_(None),
                                     col(OptimizationRun.heartbeat_at) < cutoff)))
            done = session.execute(
                update(OptimizationRun)
                .where(col(OptimizationRun.id) == run_id, claimable, ~_fresh_elsewhere(run_id, prompt_id, cutoff))
                .values(status="running", worker=worker, heartbeat_at=now))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return False
            kind = "run.reclaimed" if status_before == "running" else "run.claimed"
            session.add(RunEvent(run_id=run_id, kind=kind, at=now,
                                 data={"worker": worker, "previous_worker": worker_before}))
            return True
    except OperationalError as exc:  # SQLite: another worker holds the write lock; it wins
        if "locked" in str(exc):
            return False
        raise


def claimable_runs(engine: Engine, *, now: datetime | None = None, stale_after: timedelta = DEFAULT_STALE,
                   queued_older_than: timedelta | None = None, only: list[int] | None = None) -> list[int]:
    """Ids of runs a worker may try to claim, oldest first: queued ones, then stale running ones.

    `queued_older_than` leaves fresh queued runs to whoever queued them (the API server starts its
    own at once); `only` limits the queued ones to these ids (runs this worker just queued).
    """
    now = now or utcnow()
    cutoff = now - stale_after
    with session_scope(engine) as session:
        queued = select(OptimizationRun.id, OptimizationRun.created_at).where(OptimizationRun.status == "queued")
        rows = list(session.exec(queued.order_by(col(OptimizationRun.id))).all())
        stale = session.exec(select(OptimizationRun.id).where(
            OptimizationRun.status == "running",
            or_(col(OptimizationRun.heartbeat_at).is_(None), col(OptimizationRun.heartbeat_at) < cutoff))
            .order_by(col(OptimizationRun.id))).all()
    picked = [rid for rid, created in rows
              if (only is not None and rid in only)
              or (queued_older_than is not None and created <= now - queued_older_than)]
    return picked + [rid for rid in stale if rid not in picked]


def claim_next(engine: Engine, *, worker: str, now: datetime | None = None, stale_after: timedelta = DEFAULT_STALE,
               queued_older_than: timedelta | None = None, only: list[int] | None = None) -> int | None:
    """Claim the oldest claimable run; its id, or None when there is nothing to do."""
    for run_id in claimable_runs(engine, now=now, stale_after=stale_after, queued_older_than=queued_older_than,
                                 only=only):
        if claim_run(engine, run_id=run_id, worker=worker, now=now, stale_after=stale_after):
            return run_id
    return None


def heartbeat(engine: Engine, *, run_id: int, worker: str, now: datetime | None = None) -> bool:
    """Mark the run alive; False when it is no longer this worker's (reclaimed, finished, cancelled)."""
    with session_scope(engine) as session:
        done = session.execute(update(OptimizationRun).where(
            col(OptimizationRun.id) == run_id, OptimizationRun.status == "running",
            OptimizationRun.worker == worker).values(heartbeat_at=now or utcnow()))
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


async def execute_claimed(*, engine: Engine, settings: Settings, run_id: int, gateway: Any, worker: str,
                          now: datetime | None = None, heartbeat_s: float | None = None) -> OptimizationRun:
    """Execute a run this worker claimed, keeping its heartbeat fresh; stop if another worker took it over."""
    beat = heartbeat_s if heartbeat_s is not None else settings.scheduler.heartbeat_seconds
    task = asyncio.ensure_future(execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway,
                                             now=now, worker=worker))

    async def keep_alive() -> None:
        while not task.done():
            await asyncio.sleep(beat)
            if task.done():
                return
            if not await asyncio.to_thread(heartbeat, engine=engine, run_id=run_id, worker=worker):
                owner = await asyncio.to_thread(_owner, engine, run_id)
                if owner is not None and owner != worker:  # reclaimed as stale: the other worker goes on
                    task.cancel()
                return

    beater = asyncio.ensure_future(keep_alive())
    try:
        return await task
    finally:
        beater.cancel()
        await asyncio.gather(beater, return_exceptions=True)


def _owner(engine: Engine, run_id: int) -> str | None:
    with session_scope(engine) as session:
        row = session.exec(select(OptimizationRun.status, OptimizationRun.worker)
                           .where(OptimizationRun.id == run_id)).first()
    return row[1] if row is not None and row[0] == "running" else None
