"""The service layer: one way to start a run and one way to sync, whoever asks.

`trimloop optimize`, `POST /runs` and the scheduler's pass start runs with `start_run`; `trimloop
sync`, `POST /connectors/sync` and the pass sync with `sync`. So every run is queued under the
prompt's lock (one run per prompt, across processes), with checked options, the candidate-model
fingerprint that makes "a new candidate model or price" due, and an audit entry; and every sync
supersedes and expires the suggestions it made stale. Executing runs is `api/executor.py`;
announcing them (webhooks) happens where they end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from trimloop.connectors.sync import SyncReport, sync as sync_connectors
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.errors import Conflict
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, utcnow
from trimloop.optimizer.config import check_run_config
from trimloop.optimizer.due import candidate_prices, record_candidates
from trimloop.optimizer.queue import enqueue


def start_run(*, engine: Engine, settings: Settings, prompt_id: int, config: dict[str, Any] | None = None,
              budget_calls: int | None = None, budget_dollars: float | None = None, actor: str,
              reason: str = "", now: datetime | None = None) -> int:
    """Queue a run of the prompt; its id. Raises NotFound for an unknown prompt, RunOptionError
    (naming the field) for bad options, Conflict while another run of the prompt is queued or
    running, and Busy when SQLite stayed locked."""
    with session_scope(engine) as session:
        name = store.check_prompt(session=session, prompt_id=prompt_id).name
    check_run_config(settings, name, config)  # refuse bad options now, not once the run starts
    prices = candidate_prices(settings, name, config, now=now)  # the models this run will try (none retiring)

    def recorded(session: Session, run: OptimizationRun) -> None:
        record_candidates(session, run_id=run.id, prices=prices)  # type: ignore[arg-type]
        store.record_audit(session=session, actor=actor, action="run.create", object_type="run", object_id=run.id,
                           after={"prompt_id": prompt_id, "budget_calls": budget_calls,
                                  "budget_dollars": budget_dollars, "status": run.status,
                                  **({"reason": reason} if reason else {})})

    run_id = enqueue(engine, prompt_id=prompt_id, config=config, budget_calls=budget_calls,
                     budget_dollars=budget_dollars, reason=reason, also=recorded)
    if run_id is None:
        with session_scope(engine) as session:
            active = session.exec(select(OptimizationRun.id, OptimizationRun.status).where(
                OptimizationRun.prompt_id == prompt_id, col(OptimizationRun.status).in_(store.RUN_ACTIVE))
                .order_by(col(OptimizationRun.id))).first()
        which = f" (run {active[0]} is {active[1]})" if active else ""
        raise Conflict(f"a run of {name!r} is already queued or running{which}", where=f"prompt {prompt_id} ({name})",
                       hint="wait for it (GET /runs?prompt_id=ID; a `trimloop worker` may be running it), "
                            "or cancel it: POST /runs/RUN_ID/cancel")
    return run_id


@dataclass
class SyncOutcome:
    """What a sync did: per-connector reports, and the suggestions it superseded or expired."""

    reports: list[SyncReport] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)


def sync(*, engine: Engine, settings: Settings, actor: str, only: list[str] | None = None, full: bool = False,
         pull: bool = True, now: datetime | None = None) -> SyncOutcome:
    """Pull from the connectors (those named in `only`; none when `pull` is False), then mark open
    suggestions whose baseline left production `superseded` and pending ones older than
    scheduler.expire_pending_after_days `expired`, so the prompt stops waiting on them."""
    outcome = SyncOutcome()
    if pull:
        outcome.reports = sync_connectors(engine=engine, settings=settings, only=only, full=full)
    max_age = timedelta(days=settings.scheduler.expire_pending_after_days)
    with session_scope(engine) as session:
        outcome.superseded = store.supersede_stale(session=session, actor=actor)
        outcome.expired = store.expire_stale(session=session, now=now or utcnow(), max_age=max_age, actor=actor)
        if outcome.reports:
            store.record_audit(
                session=session, actor=actor, action="connectors.sync", object_type="connector",
                object_id=",".join(r.connector for r in outcome.reports),
                after={"reports": [{k: v for k, v in r.to_dict().items() if k != "problems"} for r in outcome.reports],
                       "superseded": outcome.superseded, "expired": outcome.expired})
    return outcome
