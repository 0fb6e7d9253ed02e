"""Which prompts are due for an optimization run, and why (or why not).

A prompt is due when it has enough new traffic since its last run, when its candidate models or
their prices changed since then, or when it has not been run for a while. It is never due while a
suggestion awaits review or a run is queued or running, nor without a production version and
logs, nor while its last health verdict (evals.health) is `broken`: no search budget is spent on a
prompt that fails its own signals (a forced run still may). With `scheduler.repair` on, a broken
prompt is due for a *repair* run instead (`DueCode.repair`, optimizer.repair) — once per broken
spell (no repair run since the verdict became broken), and again after max_days_between_runs —
on the scheduler's own repair budget, never the cost search's. A prompt whose production model retires
within `retirement_warning_days` is due with reason `model_retiring` (once its last run predates
the warning, or on the rules above) and goes first in line, the nearest date first. Traffic counts
each sampled log as 1 / sample_rate calls.
`decide` is pure (facts + policy + clock in, decision out); `due_prompts` reads the facts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any

from sqlmodel import Session, col, select

from trimloop.core import traffic
from trimloop.core.catalog import resolve_model
from trimloop.core.errors import TrimloopError
from trimloop.core.retirement import Retirement, retirement_of, split_retiring, today_of
from trimloop.core.settings import Settings
from trimloop.core.status import HealthVerdict
from trimloop.core.store import production_version_id
from trimloop.core.tables import (
    OptimizationRun,
    Prompt,
    PromptHealth,
    PromptVersion,
    RunEvent,
    Suggestion,
    as_utc,
    utcnow,
)
from trimloop.optimizer.config import check_run_config, default_candidate_models, run_config

FINGERPRINT_EVENT = "run.candidates"  # a RunEvent holding the candidate models and prices a run saw


class DueCode(StrEnum):
    """Why a prompt is due, or not, as a code (the reason says it in words)."""

    model_retiring = "model_retiring"
    never_optimized = "never_optimized"
    new_traffic = "new_traffic"
    candidates_changed = "candidates_changed"
    stale = "stale"
    no_production = "no_production"
    no_logs = "no_logs"
    invalid_options = "invalid_options"
    run_active = "run_active"
    pending_review = "pending_review"
    broken = "broken"  # its production version is broken (evals.health): no search budget spent on it
    repair = "repair"  # broken, and scheduler.repair is on: due for a repair run (its own budget)
    up_to_date = "up_to_date"


@dataclass(frozen=True)
class DueDecision:
    prompt_id: int
    due: bool
    reason: str
    prompt_name: str = ""
    code: DueCode | None = None
    deadline: date | None = None  # the production model's retirement date, when it is retiring

    @property
    def urgent(self) -> bool:
        return self.due and self.code == DueCode.model_retiring

    @property
    def repair(self) -> bool:
        """Due for a repair run (optimizer.repair), not a cost search."""
        return self.due and self.code == DueCode.repair


@dataclass(frozen=True)
class DuePolicy:
    min_new_logs: int = 200
    max_days_between_runs: float = 7.0
    retirement_warning_days: int = 60
    repair: bool = False  # a broken prompt is due for a repair run

    @classmethod
    def of(cls, settings: Settings) -> "DuePolicy":
        return cls(min_new_logs=settings.scheduler.min_new_logs,
                   max_days_between_runs=settings.scheduler.max_days_between_runs,
                   retirement_warning_days=settings.retirement_warning_days, repair=settings.scheduler.repair)


@dataclass(frozen=True)
class PromptFacts:
    """What the due rules look at, for one prompt."""

    prompt_id: int
    name: str
    has_production: bool
    logs: int
    pending_suggestion: int | None = None
    pending_migration: int | None = None  # a pending suggestion that moves the prompt off its retiring model
    active_run: tuple[int, str] | None = None  # (run id, status)
    last_run: tuple[int, datetime] | None = None  # (run id, created_at)
    new_logs: int = 0  # calls after the last run was created (a sampled log counts 1 / sample_rate)
    last_candidates: dict[str, Any] | None = None  # the models → prices the last run saw, if recorded
    candidates: dict[str, Any] | None = None  # the models → prices a run would see now
    config_error: str | None = None
    retirement: Retirement | None = None  # the production model's retirement date, when one is known
    health: str | None = None  # the last stored health verdict (evals.health)
    health_reason: str | None = None
    health_changed_at: datetime | None = None  # when the verdict last changed
    last_repair: tuple[int, datetime] | None = None  # the last repair run (id, created_at)


def decide(facts: PromptFacts, policy: DuePolicy, *, now: datetime) -> DueDecision:
    """Due or not, with the reason a person would want to read."""
    today = today_of(now)
    leaving = facts.retirement
    if leaving is not None and not leaving.retiring(today, policy.retirement_warning_days):
        leaving = None
    deadline = leaving.retires_on if leaving is not None else None

    def no(reason: str, code: DueCode) -> DueDecision:
        return DueDecision(facts.prompt_id, False, reason, facts.name, code, deadline)

    def yes(reason: str, code: DueCode) -> DueDecision:
        if leaving is not None:  # a migration run: first in line, whatever else made it due
            return DueDecision(facts.prompt_id, True, f"{DueCode.model_retiring}: {leaving.words(today)}; {reason}",
                               facts.name, DueCode.model_retiring, deadline)
        return DueDecision(facts.prompt_id, True, reason, facts.name, code)

    if not facts.has_production:
        return no("no version labelled production: label one in your prompt store, then sync", DueCode.no_production)
    if facts.logs == 0:
        return no("no logs for this prompt yet: sync a connector that has its calls", DueCode.no_logs)
    if facts.config_error:
        return no(f"invalid optimization options: {facts.config_error}", DueCode.invalid_options)
    if facts.active_run is not None:
        return no(f"run {facts.active_run[0]} is {facts.active_run[1]}", DueCode.run_active)
    if facts.pending_migration is not None and leaving is not None:
        return no(f"suggestion {facts.pending_migration} migrates it off {leaving.model}: review it before "
                  f"{leaving.retires_on.isoformat()}", DueCode.pending_review)
    # a pending suggestion that keeps the retiring model does not hold up the search for a replacement
    if facts.pending_suggestion is not None and leaving is None:
        return no(f"suggestion {facts.pending_suggestion} is pending review", DueCode.pending_review)
    if facts.health == HealthVerdict.broken:
        if policy.repair:
            last = facts.last_repair
            since = facts.health_changed_at
            if last is None or (since is not None and as_utc(last[1]) < as_utc(since)):
                return DueDecision(facts.prompt_id, True, f"broken, so due for a repair run, not a cost search "
                                   f"({facts.health_reason})", facts.name, DueCode.repair, deadline)
            age = now - last[1]
            if age >= timedelta(days=policy.max_days_between_runs):
                return DueDecision(facts.prompt_id, True, f"still broken {age.total_seconds() / 86400:.1f} days after "
                                   f"repair run {last[0]}: due for another repair run", facts.name, DueCode.repair,
                                   deadline)
            return no(f"broken; repair run {last[0]} already searched for a fix since it broke ({facts.health_reason})",
                      DueCode.broken)
        return no(f"its production version is broken, so no search budget is spent on it ({facts.health_reason}); "
                  "fix the prompt, search for a repair (trimloop optimize NAME --repair, or scheduler.repair = true), "
                  "or start a forced run (trimloop optimize --force)", DueCode.broken)
    if facts.last_run is None:
        return yes(f"never optimized ({facts.logs} logs)", DueCode.never_optimized)
    run_id, at = facts.last_run
    if leaving is not None:
        warned = datetime.combine(leaving.retires_on - timedelta(days=policy.retirement_warning_days), time.min,
                                  tzinfo=timezone.utc)
        if as_utc(at) < warned:
            return yes(f"run {run_id} predates the warning: find a replacement model before the date",
                       DueCode.model_retiring)
    if facts.new_logs >= policy.min_new_logs:
        return yes(f"{facts.new_logs} new logs since run {run_id} (threshold {policy.min_new_logs})",
                   DueCode.new_traffic)
    changed = candidates_changed(facts.last_candidates, facts.candidates)
    if changed:
        return yes(f"candidate models changed since run {run_id}: {changed}", DueCode.candidates_changed)
    age = now - at
    if age >= timedelta(days=policy.max_days_between_runs):
        return yes(f"no run for {age.total_seconds() / 86400:.1f} days (limit {policy.max_days_between_runs:g})",
                   DueCode.stale)
    if leaving is not None:
        return no(f"{leaving.words(today)}: run {run_id} already looked for a replacement since the warning began; "
                  "it runs again on new traffic or new candidate models", DueCode.up_to_date)
    return no(f"up to date: {facts.new_logs} new logs since run {run_id} (< {policy.min_new_logs}), "
              f"last run {age.total_seconds() / 86400:.1f} days ago", DueCode.up_to_date)


def candidates_changed(before: dict[str, Any] | None, now: dict[str, Any] | None) -> str:
    """'' when unchanged or unknown, else what changed: added, removed and repriced models."""
    if before is None or now is None or before == now:
        return ""
    parts = []
    added = sorted(set(now) - set(before))
    removed = sorted(set(before) - set(now))
    repriced = sorted(m for m in set(now) & set(before) if now[m] != before[m])
    if added:
        parts.append("new " + ", ".join(added))
    if removed:
        parts.append("removed " + ", ".join(removed))
    if repriced:
        parts.append("new price for " + ", ".join(repriced))
    return "; ".join(parts)


def candidate_prices(settings: Settings, prompt_name: str, overrides: dict[str, Any] | None = None,
                     *, now: datetime | None = None) -> dict[str, Any]:
    """The candidate models a run of this prompt would try (with the run's own options
    `overrides`) on `now`'s day — retiring ones are left out — each with its [input, output] $/token."""
    models = run_config(settings, prompt_name, overrides).models or default_candidate_models(settings)
    models, _ = split_retiring(settings, models, today_of(now or utcnow()))
    prices: dict[str, Any] = {}
    for model_id in sorted(models):
        try:
            resolved = resolve_model(settings, model_id)
            prices[model_id] = [resolved.input_per_token, resolved.output_per_token]
        except TrimloopError:
            prices[model_id] = None
    return prices


def fingerprint(prices: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(prices, sort_keys=True).encode()).hexdigest()


def record_candidates(session: Session, *, run_id: int, prices: dict[str, Any]) -> None:
    """Remember which candidate models and prices a run saw, so a later change makes it due."""
    session.add(RunEvent(run_id=run_id, kind=FINGERPRINT_EVENT,
                         data={"models": prices, "fingerprint": fingerprint(prices)}))


def prompt_facts(session: Session, settings: Settings, prompt: Prompt, *, now: datetime | None = None) -> PromptFacts:
    """Read the facts `decide` needs for one prompt (`now`: the clock, for retirements)."""
    pid = prompt.id
    assert pid is not None
    conn = session.connection()
    logs = traffic.records_ingested(conn, prompt_id=pid)
    pending = session.exec(select(Suggestion.id).where(
        Suggestion.prompt_id == pid, Suggestion.status == "pending").order_by(col(Suggestion.id))).first()
    migration = session.exec(select(Suggestion.id).where(
        Suggestion.prompt_id == pid, Suggestion.status == "pending", col(Suggestion.retires_on).is_not(None))
        .order_by(col(Suggestion.id))).first() if pending is not None else None
    active = session.exec(select(OptimizationRun.id, OptimizationRun.status).where(
        OptimizationRun.prompt_id == pid, col(OptimizationRun.status).in_(("queued", "running")))).first()
    last = session.exec(select(OptimizationRun.id, OptimizationRun.created_at).where(
        OptimizationRun.prompt_id == pid).order_by(col(OptimizationRun.created_at).desc(),
                                                   col(OptimizationRun.id).desc())).first()
    new_logs, last_candidates = 0, None
    if last is not None:
        # calls after the run was created (a log at that very microsecond is not new)
        after = as_utc(last[1]) + timedelta(microseconds=1)
        new_logs = sum(s.calls for s in traffic.sums(conn, by=(), since=after, prompt_ids=[pid]).values())
        event = session.exec(select(RunEvent.data).where(
            RunEvent.run_id == last[0], RunEvent.kind == FINGERPRINT_EVENT).order_by(col(RunEvent.id).desc())).first()
        last_candidates = event.get("models") if event else None
    health = session.exec(select(PromptHealth).where(PromptHealth.prompt_id == pid)).first()
    repairs = [(rid, at) for rid, at, config in session.exec(
        select(OptimizationRun.id, OptimizationRun.created_at, OptimizationRun.config).where(
            OptimizationRun.prompt_id == pid).order_by(col(OptimizationRun.created_at).desc()).limit(50)).all()
        if (config or {}).get("repair")]
    candidates, config_error = None, None
    try:
        check_run_config(settings, prompt.name)  # what `start_run` refuses is not due
        candidates = candidate_prices(settings, prompt.name, now=now)
    except TrimloopError as exc:
        config_error = f"{exc.message} ({exc.where})" if exc.where else exc.message
    production = production_version_id(session=session, prompt_id=pid)
    model = session.get(PromptVersion, production).model if production is not None else None  # type: ignore[union-attr]
    return PromptFacts(
        prompt_id=pid, name=prompt.name, has_production=production is not None,
        logs=int(logs), pending_suggestion=pending, pending_migration=migration, active_run=tuple(active) if active else None,  # type: ignore[arg-type]
        last_run=tuple(last) if last else None, new_logs=round(float(new_logs)),  # type: ignore[arg-type]
        last_candidates=last_candidates, candidates=candidates, config_error=config_error,
        retirement=retirement_of(settings, model),
        health=str(health.verdict) if health else None,
        health_reason="; ".join(health.report.reasons) if health else None,
        health_changed_at=health.changed_at if health else None,
        last_repair=tuple(repairs[0]) if repairs else None,  # type: ignore[arg-type]
    )


def due_prompts(session: Session, settings: Settings, *, now: datetime,
                policy: DuePolicy | None = None) -> list[DueDecision]:
    """A decision for every prompt in the store: the due ones on a retiring model first (nearest
    retirement first), then the rest in name order. The scheduler queues them in this order."""
    policy = policy or DuePolicy.of(settings)
    prompts = session.exec(select(Prompt).order_by(col(Prompt.name))).all()
    decisions = [decide(prompt_facts(session, settings, p, now=now), policy, now=now) for p in prompts]
    return sorted(decisions, key=lambda d: (not d.urgent, d.deadline if d.urgent and d.deadline else date.max))
