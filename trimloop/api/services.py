"""The service layer: one way to start a run and one way to sync, whoever asks.

`trimloop optimize`, `POST /runs` and the scheduler's pass start runs with `start_run`; `trimloop
sync`, `POST /connectors/sync` and the pass sync with `sync`. So every run is queued under the
prompt's lock (one run per prompt, across processes), with checked options, the candidate-model
fingerprint that makes "a new candidate model or price" due, and an audit entry; and every sync
supersedes and expires the suggestions it made stale. Executing runs is `api/executor.py`;
announcing them (webhooks) happens where they end. `check_health` computes and stores prompt
health (evals.health) for the scheduler's pass, `trimloop health` and `GET /prompts/{id}/health`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from trimloop.api.webhooks import HealthChange
from trimloop.api.watch import WatchOutcome, check_watches
from trimloop.connectors.sync import SyncReport, sync as sync_connectors
from trimloop.core import reservoir, store
from trimloop.core.db import session_scope
from trimloop.core.errors import Conflict, TrimloopError
from trimloop.core.evidence import HealthReport
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, Prompt, utcnow
from trimloop.evals.health import prompt_health, record_health
from trimloop.optimizer.config import check_run_config
from trimloop.optimizer.due import candidate_prices, record_candidates
from trimloop.optimizer.queue import enqueue

log = logging.getLogger("trimloop.api.services")


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
    """What a sync did: per-connector reports, the suggestions it superseded or expired, and what the
    post-deploy watch of each deployed suggestion found (and did) after it."""

    reports: list[SyncReport] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    watches: list[WatchOutcome] = field(default_factory=list)


def sync(*, engine: Engine, settings: Settings, actor: str, only: list[str] | None = None, full: bool = False,
         pull: bool = True, now: datetime | None = None, watch: bool = True,
         gateway_factory: Any = None, transport: Any = None) -> SyncOutcome:
    """Pull from the connectors (those named in `only`; none when `pull` is False), then mark open
    suggestions whose baseline left production `superseded` and pending ones older than
    scheduler.expire_pending_after_days `expired`, so the prompt stops waiting on them; then look at
    every deployed suggestion's watch (api/watch.py: verdict, alert, rollback or promote by policy).
    `gateway_factory` and `transport` replace the real gateway (shadow scoring) and webhook transport."""
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
    if watch:
        outcome.watches = check_watches(engine=engine, settings=settings, now=now, gateway_factory=gateway_factory,
                                        transport=transport)
    return outcome


def sweep(*, engine: Engine, settings: Settings, now: datetime | None = None) -> reservoir.SweepReport:
    """Delete full log records older than `retention_days` (core.reservoir), a few hundred per
    transaction; their calls stay in the traffic aggregates."""
    return reservoir.sweep(engine, policy=reservoir.Policy.of(settings), now=now)


@dataclass
class HealthOutcome:
    """What a health check found: a report per prompt, and the verdicts it changed."""

    reports: dict[int, HealthReport] = field(default_factory=dict)
    changes: list[HealthChange] = field(default_factory=list)
    problems: dict[int, str] = field(default_factory=dict)  # prompt id → why it could not be checked


def check_health(*, engine: Engine, settings: Settings, prompt_ids: list[int] | None = None,
                 now: datetime | None = None) -> HealthOutcome:
    """Compute and store the health of the given prompts (default: every prompt). A prompt that
    cannot be checked (bad health options) raises when it was named, else is noted in `problems`.
    Announcing the changes (webhooks) is the caller's: `webhooks.announce_health`."""
    outcome = HealthOutcome()
    with session_scope(engine) as session:
        named = prompt_ids is not None
        if prompt_ids is None:
            prompt_ids = [p for p in session.exec(select(Prompt.id).order_by(col(Prompt.id))).all() if p is not None]
        else:
            for pid in prompt_ids:
                store.check_prompt(session=session, prompt_id=pid)
    for pid in prompt_ids:
        try:
            with session_scope(engine) as session:
                report = prompt_health(session, settings, prompt_id=pid, now=now)
                before = record_health(session, report)
                name = session.get(Prompt, pid).name  # type: ignore[union-attr]
        except TrimloopError as exc:
            if named:
                raise
            log.warning("health of prompt %s not checked: %s", pid, exc.message)
            outcome.problems[pid] = f"{exc.message} ({exc.where})" if exc.where else exc.message
            continue
        except Exception as exc:  # a bug must not stop the pass's sync and runs: the log has the traceback
            if named:
                raise
            log.exception("health of prompt %s failed", pid)
            outcome.problems[pid] = f"internal error ({exc.__class__.__name__}); the server log has the details"
            continue
        outcome.reports[pid] = report
        if before is not None:
            outcome.changes.append(HealthChange(prompt_id=pid, prompt=name, before=before, after=report.verdict,
                                                reasons=list(report.reasons)))
    return outcome
