"""What the pages show, computed from the store: queue cards, one suggestion's evidence, the
finance dashboard's series. Pure data for the templates; no HTML is built here."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import JSON, case, func, type_coerce
from sqlmodel import Session, col, select

from trimloop.api import reporting
from trimloop.api.ui import charts
from trimloop.core.evidence import Evidence
from trimloop.core import traffic
from trimloop.core.status import OPEN_SUGGESTION, SuggestionKind, SuggestionStatus
from trimloop.core.tables import Prompt, Suggestion


def short_model(model: str | None) -> str:
    return (model or "?").rsplit("/", 1)[-1]


def change_in_words(evidence: Evidence, before_model: str | None = None,
                    after_model: str | None = None) -> str:
    """"−62 % prompt tokens, gemma3-270m → smollm2-135m, temperature 0 → 0.2"."""
    parts = []
    tokens, changes = evidence.prompt_tokens, evidence.changes
    if len(tokens) == 2 and tokens[0]:
        change = (tokens[1] - tokens[0]) / tokens[0] * 100
        if abs(change) >= 0.5:
            parts.append(f"{'−' if change < 0 else '+'}{abs(change):.0f} % prompt tokens")
    elif len(chars := changes.template_chars) == 2 and chars[0]:
        change = (chars[1] - chars[0]) / chars[0] * 100
        if abs(change) >= 0.5:
            parts.append(f"{'−' if change < 0 else '+'}{abs(change):.0f} % prompt text")
    models = changes.model or [before_model, after_model]
    if len(models) == 2 and models[0] and models[1] and models[0] != models[1]:
        parts.append(f"{short_model(models[0])} → {short_model(models[1])}")
    for name, pair in sorted(changes.params.items()):
        old, new = (list(pair) + [None, None])[:2]
        parts.append(f"{name} {old if old is not None else 'unset'} → {new if new is not None else 'unset'}")
    return ", ".join(parts) or "same prompt and model, cheaper settings"


def verdict(evidence: Evidence) -> tuple[str, bool]:
    """("quality holds on 2 of 2 evaluators", True), in words for the card; a repair's
    ("better on 1 of 1 evaluator: label +0.42 (0.02 → 0.44)", True)."""
    rows = evidence.evaluators
    if not rows:
        return "no quality evidence recorded", False
    passed = evidence.passes()
    if evidence.kind == "repair":
        gains = ", ".join(f"{k} {v.delta:+.2f} ({v.baseline_mean:.2f} → {v.candidate_mean:.2f})"
                          for k, v in sorted(rows.items())
                          if None not in (v.delta, v.baseline_mean, v.candidate_mean))
        return (f"better on {passed} of {len(rows)} evaluator{'s' if len(rows) > 1 else ''}"
                + (f": {gains}" if gains else ""), passed == len(rows))
    if passed == len(rows):
        return f"quality holds on {passed} of {len(rows)} evaluator{'s' if len(rows) > 1 else ''}", True
    return f"quality not shown on {len(rows) - passed} of {len(rows)} evaluators", False


def deadline_words(retires_on: date | None, today: date) -> str | None:
    """"gpt model retires 2026-12-11 (in 10 days)": the flag on a migration off a retiring model."""
    if retires_on is None:
        return None
    left = (retires_on - today).days
    when = f"in {left} day{'s' if left != 1 else ''}" if left >= 0 else f"{-left} day{'s' if left != -1 else ''} ago"
    return f"model retires {retires_on.isoformat()} ({when}): migrate before then"


def queue_cards(session: Session, limit: int = 100, *, today: date | None = None) -> tuple[list[dict[str, Any]], int]:
    """Pending suggestions — migrations off a retiring model first, the nearest date first, then
    repairs of failing prompts, then the biggest projected monthly savings — (the top `limit`), and
    their count. A repair's card is marked as one and shows its cost change (which may be a rise).

    Reads only the parts of the evidence a card shows; the differing items are most of its bytes."""
    today = today or datetime.now(timezone.utc).date()
    names = dict(session.exec(select(Prompt.id, Prompt.name)).all())
    evidence = type_coerce(Suggestion.evidence, JSON)  # parts of it: plain JSON, not the whole record
    pending = Suggestion.status == SuggestionStatus.pending
    count = session.exec(select(func.count()).where(pending)).one()
    rows = session.exec(
        select(Suggestion.id, Suggestion.prompt_id, Suggestion.projected_monthly_savings, Suggestion.savings_low,
               Suggestion.savings_high, evidence["prompt_tokens"], evidence[("changes", "model")],
               evidence[("changes", "params")], evidence[("changes", "template_chars")], evidence["evaluators"],
               Suggestion.retires_on, Suggestion.kind, Suggestion.baseline_cost_per_call,
               Suggestion.candidate_cost_per_call, evidence["latency"])
        .where(pending).order_by(*queue_order())
        .limit(limit)).all()
    cards = []
    for (sid, prompt_id, monthly, low, high, tokens, model, params, chars, evaluators, retires_on, kind,
         before, after, latency) in rows:
        changes = {k: v for k, v in (("model", model), ("params", params), ("template_chars", chars)) if v is not None}
        ev = Evidence.load({k: v for k, v in (("prompt_tokens", tokens), ("changes", changes),
                                              ("evaluators", evaluators), ("kind", kind),
                                              ("latency", latency)) if v is not None})
        words, ok = verdict(ev)
        repair = kind == SuggestionKind.repair
        cost = None
        if repair and before and after is not None:
            cost = (f"{'+' if after >= before else '−'}{abs(after / before - 1) * 100:.0f} % per call "
                    f"({charts.money(-monthly if monthly is not None else None)} / month "
                    f"{'more' if (monthly or 0) <= 0 else 'less'})")
        cards.append({"id": sid, "prompt": names.get(prompt_id, "?"), "change": change_in_words(ev),
                      "monthly": charts.money(monthly), "range": f"{charts.money(low)} – {charts.money(high)}",
                      "verdict": words, "ok": ok, "deadline": deadline_words(retires_on, today),
                      "repair": repair, "cost": cost, "objective": ev.objective(), "kind": str(kind or "cost"),
                      "latency": ev.latency.line if ev.latency is not None else None})
    return cards, int(count)


def queue_order() -> tuple[Any, ...]:
    """The review queue's order: migrations off a retiring model (nearest date first), then
    repairs, then the biggest projected monthly savings (store.list_suggestions agrees)."""
    return (col(Suggestion.retires_on).asc().nulls_last(),
            case((col(Suggestion.kind) == SuggestionKind.repair.value, 0), else_=1),
            col(Suggestion.projected_monthly_savings).desc().nulls_last(), col(Suggestion.id))


def evidence_rows(evidence: Evidence) -> list[dict[str, Any]]:
    return [{"key": key, "row": row, "plot": charts.interval_plot(row), "ok": row.ok}
            for key, row in sorted(evidence.evaluators.items())]


def template_text(template: dict[str, Any]) -> str:
    if template.get("kind") == "chat":
        return "\n\n".join(f"[{m.get('role')}]\n{m.get('content')}" for m in template.get("messages") or [])
    return str(template.get("text") or "")


def template_diff(evidence: Evidence, before: dict[str, Any], after: dict[str, Any]) -> list[list[str]]:
    """The recorded word diff, or a whole-text before/after when none was recorded."""
    diff = evidence.changes.template_diff
    if diff:
        return [[str(op), str(text)] for op, text in diff]
    a, b = template_text(before), template_text(after)
    return [["equal", a]] if a == b else [["delete", a], ["insert", b]]


def parse_day(value: str | None, default: date) -> date:
    try:
        return date.fromisoformat(value) if value else default
    except ValueError:
        return default


def spend_series(session: Session, start: date, end: date) -> dict[str, Any]:
    """Cost per day, split by prompt and by model, for [start, end] (a sampled log counts 1 / its rate).

    Rolled up by the database: totals per prompt (the table, and which prompts the chart shows
    apart), per day, and per day for the shown prompts only; "other" is the day's total less them.
    Reading every day × prompt row (1,500 for 50 prompts over 30 days) took most of the page's time."""
    since = datetime.combine(start, time.min, tzinfo=timezone.utc)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=timezone.utc)
    conn = session.connection()
    per_prompt = {key[0]: s for key, s in traffic.sums(conn, by=("prompt_id",), since=since, until=until).items()}
    names = dict(session.exec(select(Prompt.id, Prompt.name)).all()) if per_prompt else {}

    def name_of(prompt_id: int | None) -> str:
        return names.get(prompt_id) or "(unknown prompt)"  # type: ignore[arg-type]

    table: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for prompt_id, s in per_prompt.items():
        table[name_of(prompt_id)][0] += s.calls
        table[name_of(prompt_id)][1] += s.spend
    ranked = sorted(per_prompt, key=lambda p: -per_prompt[p].spend)
    merged = len(ranked) > charts.MAX_SERIES
    shown = ranked[:charts.MAX_SERIES - 1] if merged else ranked
    by_prompt: dict[str, dict[str, float]] = defaultdict(dict)
    for (d, prompt_id), s in traffic.sums(conn, by=("day", "prompt_id"), since=since, until=until,
                                          prompt_ids=[p or 0 for p in shown]).items():
        by_prompt[name_of(prompt_id)][str(d)] = by_prompt[name_of(prompt_id)].get(str(d), 0.0) + s.spend
    other = None
    if merged:
        other = {}
        for (d,), s in traffic.sums(conn, by=("day",), since=since, until=until).items():
            rest = s.spend - sum(series.get(str(d), 0.0) for series in by_prompt.values())
            other[str(d)] = max(0.0, rest)
    by_model: dict[str, dict[str, float]] = defaultdict(dict)
    for (d, model), s in traffic.sums(conn, by=("day", "model"), since=since, until=until).items():
        model = short_model(model)
        by_model[model][str(d)] = by_model[model].get(str(d), 0.0) + s.spend
    days = [str(start + timedelta(days=i)) for i in range((end - start).days + 1)]
    return {"by_prompt": charts.stacked_bars(days, by_prompt, other=other), "by_model": charts.stacked_bars(days, by_model),
            "table": sorted(((k, round(v[0]), v[1]) for k, v in table.items()), key=lambda r: -r[2]),
            "total": sum(v[1] for v in table.values())}


def open_savings(session: Session, limit: int = 100, *, today: date | None = None
                 ) -> tuple[list[dict[str, Any]], int, float, float]:
    """Pending and approved suggestions — migrations off a retiring model first (nearest date first,
    flagged), then by projected savings — (the top `limit`), their count, the total projected
    savings of those that save and the total extra cost of those that cost more (repairs, faster
    versions), kept apart so a repair's cost never shrinks the savings finance reads.

    Reads only the columns it shows: loading 1,000 suggestions' evidence would cost ~300 ms."""
    today = today or datetime.now(timezone.utc).date()
    status = col(Suggestion.status).in_(OPEN_SUGGESTION)
    savings = col(Suggestion.projected_monthly_savings)
    count, total, extra = session.exec(select(
        func.count(), func.coalesce(func.sum(case((savings > 0, savings), else_=0.0)), 0.0),
        func.coalesce(func.sum(case((savings < 0, -savings), else_=0.0)), 0.0)).where(status)).one()
    rows = session.exec(
        select(Suggestion.id, Prompt.name, Suggestion.status, Suggestion.projected_monthly_savings,
               Suggestion.savings_low, Suggestion.savings_high, Suggestion.retires_on)
        .join(Prompt, col(Prompt.id) == Suggestion.prompt_id, isouter=True).where(status)
        .order_by(col(Suggestion.retires_on).asc().nulls_last(),
                  col(Suggestion.projected_monthly_savings).desc().nulls_last(), col(Suggestion.id)).limit(limit)).all()
    keys = ("suggestion_id", "prompt", "status", "projected_monthly_savings", "savings_low", "savings_high",
            "retires_on")
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    for row in out:
        row["deadline"] = deadline_words(row["retires_on"], today)
    return out, int(count), float(total), float(extra)


def realized_rows(session: Session) -> list[Any]:
    """Deployed (and rolled back) suggestions with realized savings since promotion."""
    return reporting.realized_rows(session, dict(session.exec(select(Prompt.id, Prompt.name)).all()))
