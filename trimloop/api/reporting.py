"""The savings report: spend from logs, projected savings of open suggestions, realized savings of
deployed ones (post-promotion logs of the new version against the baseline's cost per call)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from trimloop.api.schemas import SavingsReport, SavingsRow, SpendRow
from trimloop.core.tables import Deployment, LogRecord, Prompt, Suggestion, utcnow


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def spend(session: Session, since: datetime) -> tuple[list[SpendRow], list[SpendRow], list[SpendRow]]:
    """Calls and cost by day, by prompt and by model since `since`: one scan of the window's logs,
    grouped by (day, prompt, model), rolled up here (three scans took 3x as long)."""
    day = func.date(LogRecord.called_at)
    rows = session.exec(
        select(day, LogRecord.prompt_id, LogRecord.model, func.count(), func.coalesce(func.sum(LogRecord.cost), 0.0))
        .where(LogRecord.called_at >= since)  # type: ignore[operator]
        .group_by(day, LogRecord.prompt_id, LogRecord.model)).all()
    days: dict[Any, list[Any]] = {}
    prompts: dict[Any, list[Any]] = {}
    models: dict[Any, list[Any]] = {}
    for d, prompt_id, model, n, c in rows:
        for totals, key in ((days, d), (prompts, prompt_id), (models, model)):
            acc = totals.setdefault(key, [0, 0.0])
            acc[0] += n
            acc[1] += c
    names = dict(session.exec(select(Prompt.id, Prompt.name).where(
        col(Prompt.id).in_([p for p in prompts if p is not None]))).all()) if prompts else {}
    by_day = [SpendRow(day=d, calls=n, cost=c) for d, (n, c) in sorted(days.items())]
    by_prompt = [SpendRow(prompt_id=p, prompt=names.get(p) if p is not None else None, calls=n, cost=c)
                 for p, (n, c) in sorted(prompts.items(), key=lambda kv: -kv[1][1])]
    by_model = [SpendRow(model=m, calls=n, cost=c) for m, (n, c) in sorted(models.items(), key=lambda kv: -kv[1][1])]
    return by_day, by_prompt, by_model


def _cost_stats(session: Session, version_id: int, since: datetime | None = None,
                until: datetime | None = None) -> tuple[int, float | None]:
    query = select(func.count(), func.avg(LogRecord.cost)).where(LogRecord.version_id == version_id)
    if since is not None:
        query = query.where(LogRecord.called_at >= since)  # type: ignore[operator]
    if until is not None:
        query = query.where(LogRecord.called_at < until)  # type: ignore[operator]
    calls, avg = session.exec(query).one()
    return int(calls), avg


def realized(session: Session, suggestion: Suggestion, prompt: str) -> SavingsRow:
    """Realized savings of one deployed suggestion since its promotion to production."""
    moves: dict[str, datetime] = {}  # the first promote, the first rollback
    for d in session.exec(select(Deployment).where(Deployment.suggestion_id == suggestion.id,
                                                   Deployment.status == "done").order_by(col(Deployment.id))).all():
        moves.setdefault(d.action, d.created_at)
    row = SavingsRow(suggestion_id=suggestion.id, prompt=prompt, status=suggestion.status,  # type: ignore[arg-type]
                     projected_monthly_savings=suggestion.projected_monthly_savings,
                     savings_low=suggestion.savings_low, savings_high=suggestion.savings_high)
    since = moves.get("promote")
    if since is None:
        return row
    until = moves.get("rollback")
    calls, realized_cpc = _cost_stats(session, suggestion.candidate_version_id, since, until)
    _, baseline_logs = _cost_stats(session, suggestion.baseline_version_id, None, since)
    baseline = baseline_logs if baseline_logs is not None else suggestion.baseline_cost_per_call
    row.since, row.realized_calls, row.realized_cost_per_call = since, calls, realized_cpc
    row.baseline_cost_per_call = baseline
    if calls and realized_cpc is not None and baseline is not None:
        per_call = baseline - realized_cpc
        row.realized_savings_to_date = per_call * calls
        days = max(((_aware(until) if until else utcnow()) - _aware(since)).total_seconds() / 86400, 1.0)
        row.realized_monthly_savings = per_call * calls / days * 30
    return row


def savings_report(session: Session, days: int = 30) -> SavingsReport:
    since = utcnow() - timedelta(days=days)
    by_day, by_prompt, by_model = spend(session, since)
    names = dict(session.exec(select(Prompt.id, Prompt.name)).all())
    lean = defer(Suggestion.evidence)  # type: ignore[arg-type]  # the report never reads the evidence
    projected = [SavingsRow(suggestion_id=s.id, prompt=names.get(s.prompt_id, "?"), status=s.status,  # type: ignore[arg-type]
                            projected_monthly_savings=s.projected_monthly_savings, savings_low=s.savings_low,
                            savings_high=s.savings_high, baseline_cost_per_call=s.baseline_cost_per_call)
                 for s in session.exec(select(Suggestion).options(lean)
                                       .where(col(Suggestion.status).in_(("pending", "approved")))
                                       .order_by(col(Suggestion.projected_monthly_savings).desc())).all()]
    done = [realized(session, s, names.get(s.prompt_id, "?")) for s in session.exec(
        select(Suggestion).options(lean).where(col(Suggestion.status).in_(("deployed", "rolled_back")))
        .order_by(col(Suggestion.id))).all()]
    return SavingsReport(
        since=since, spend_by_day=by_day, spend_by_prompt=by_prompt, spend_by_model=by_model,
        projected=projected, realized=done,
        total_projected_monthly=sum(r.projected_monthly_savings or 0 for r in projected),
        total_realized_monthly=sum(r.realized_monthly_savings or 0 for r in done if r.status == "deployed"))


CSV_COLUMNS = ("section", "day", "prompt", "model", "calls", "cost", "suggestion_id", "status",
               "projected_monthly_savings", "realized_monthly_savings", "realized_savings_to_date",
               "baseline_cost_per_call", "realized_cost_per_call", "realized_calls", "since")


def as_csv(report: SavingsReport) -> str:
    """One table for spreadsheets: a `section` column says which part of the report a row is."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    sections: list[tuple[str, list[Any]]] = [
        ("spend_by_day", report.spend_by_day), ("spend_by_prompt", report.spend_by_prompt),
        ("spend_by_model", report.spend_by_model), ("projected", report.projected),
        ("realized", report.realized)]
    for name, rows in sections:
        for row in rows:
            writer.writerow({"section": name, **row.model_dump(exclude_none=True)})
    return out.getvalue()
