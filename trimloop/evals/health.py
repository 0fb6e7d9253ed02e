"""Prompt health: is the production version of a prompt doing its job, judged from its own logs?

For the production version, over a trailing window (default 14 days), per day and in all:

- each configured evaluator against gold answers where there are some (`expected_from` names the
  feedback that holds them); evaluators that need a reference are scored on items that have one;
- every feedback signal by name (thumbs, scores in [0, 1]; other numbers are shown, not judged);
- output-format failures: answers naming no label (label evaluators), JSON that does not parse or
  fails its schema (json evaluators), empty answers;
- provider errors (a log with no output, or an error in its metadata); cost per call; latency p50/p95.

Verdict, with the numbers behind it (`HealthReport.reasons`):

- `broken`: a label evaluator does worse than always answering the most common gold label, or
  most answers fail their format, or a signal is below its `broken_below` floor;
- `degraded`: a signal is worse over the recent days than over the days before (its trailing
  baseline) by at least `min_drop`, or below its `floors` entry;
- `healthy`: some quality signal, none of the above; `unknown`: no calls, or no quality signal.

Every "worse" is decided on anytime-valid confidence sequences (evals.anytime), because health is
re-checked after every sync. `baseline_check` applies the `broken` rules to a run's dataset, so a
run refuses to search for cheaper variants of a broken prompt (optimizer.run).

    [prompts.support-triage.health]
    window_days = 14
    recent_days = 3
    floors = {label = 0.8, "feedback:thumbs" = 0.6}
    broken_below = {label = 0.3}
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from trimloop.core import traffic
from trimloop.core.defaults import DEFAULT_ALPHA
from trimloop.core.errors import ConfigError, NotFound
from trimloop.core.evidence import HealthDay, HealthReport, HealthSignal, LabelCheck
from trimloop.core.settings import Settings
from trimloop.core.status import HealthVerdict
from trimloop.core.tables import MAX_COST_PER_CALL, MAX_LATENCY_S, LogRecord, Prompt, PromptHealth, as_utc, utcnow
from trimloop.evals.anytime import confidence_sequence, mean_interval, percentile_interval
from trimloop.evals.datasets import _expected, default_evaluators, production_version
from trimloop.evals.evaluators import EvalContext, MissingReference, NamedEvaluator, build_evaluators, find_labels
from trimloop.evals.evaluators.base import normalise
from trimloop.evals.evaluators.structured import JsonFields, JsonSchema, JsonValid, parse_json
from trimloop.evals.evaluators.text import Label, MatchesBaseline

V = HealthVerdict
MIN_ITEMS = 10  # fewer items than this decide nothing (too few to say anything)
ERROR_MARKERS = traffic.ERROR_MARKERS


class HealthConfig(BaseModel):
    """`[prompts.NAME.health]`: the window, the level, and the floors per signal key."""

    model_config = {"extra": "forbid", "allow_inf_nan": False}

    window_days: int = Field(default=14, ge=2, le=365)
    recent_days: int = Field(default=3, ge=1, le=180, description="compared with the days before them")
    alpha: float = Field(default=DEFAULT_ALPHA, gt=0, lt=0.5)
    min_drop: float = Field(default=0.05, ge=0, le=1, description="smallest worsening that counts as degraded")
    floors: dict[str, float] = Field(default_factory=dict, description="signal → floor; degraded below it")
    broken_below: dict[str, float] = Field(default_factory=dict, description="signal → floor; broken below it")
    unparseable_broken: float = Field(default=0.5, gt=0, lt=1, description="broken when more answers than this "
                                      "fail their format")
    max_logs: int = Field(default=20_000, ge=100, le=1_000_000, description="newest calls read per check")


def health_config(settings: Settings, prompt_name: str) -> HealthConfig:
    """The prompt's health options (`[prompts.NAME.health]`); a ConfigError names a bad key."""
    return parse_health(settings.prompts.get(prompt_name, {}).get("health"), where=f"[prompts.{prompt_name}.health]")


def parse_health(raw: Any, *, where: str) -> HealthConfig:
    """Health options from a table (None: the defaults); a ConfigError names a bad key."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"health must be a table, got {raw!r}", where=where, hint="e.g. health = {window_days = 14}")
    try:
        config = HealthConfig(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        first = ".".join(map(str, exc.errors()[0]["loc"]))
        raise ConfigError(f"invalid health options: {problems}", where=f"{where}.{first}",
                          hint=f"known options: {', '.join(HealthConfig.model_fields)}") from None
    if config.recent_days >= config.window_days:
        raise ConfigError(f"recent_days ({config.recent_days}) must be less than window_days ({config.window_days})",
                          where=f"{where}.recent_days", hint="the days before the recent ones are its baseline")
    for table in ("floors", "broken_below"):
        for key, value in getattr(config, table).items():
            if not 0 <= value <= 1:
                raise ConfigError(f"{table}.{key} must be in [0, 1] (a share or a 0–1 score), got {value:g}",
                                  where=f"{where}.{table}.{key}", hint=f"e.g. {table} = {{{key} = 0.6}}")
    return config


@dataclass
class Call:
    """One logged call as health reads it."""

    at: datetime
    output: str | None
    inputs: dict[str, Any] = field(default_factory=dict)
    expected: str | None = None
    feedback: list[dict[str, Any]] = field(default_factory=list)
    error: bool = False
    cost: float | None = None
    latency_s: float | None = None


def is_error(log: LogRecord) -> bool:
    """A call that failed at the provider: no output, or an error in what the connector kept."""
    return traffic.is_error(log.output, log.meta)  # the rule the traffic aggregates count errors by


# ---------------------------------------------------------------------------------------------
# Signals from calls


def _label_sets(evaluators: Sequence[NamedEvaluator]) -> list[tuple[str, list[str], str]]:
    """(evaluator key, labels, mode) of every evaluator that reads a label from the answer."""
    out = []
    for named in evaluators:
        ev = named.evaluator
        if isinstance(ev, Label):
            out.append((named.key, list(ev.labels), ev.mode))
        elif isinstance(ev, MatchesBaseline) and ev.labels:
            out.append((named.key, list(ev.labels), "only"))
    return out


def _days(points: Sequence[tuple[datetime, float]]) -> list[HealthDay]:
    by_day: dict[str, list[float]] = defaultdict(list)
    for at, value in points:
        by_day[as_utc(at).date().isoformat()].append(value)
    return [HealthDay(day=d, n=len(v), value=sum(v) / len(v)) for d, v in sorted(by_day.items())]


def _signal(key: str, kind: str, title: str, points: Sequence[tuple[datetime, float]], *, better: str,
            alpha: float, bounded: bool = True, split: datetime | None = None) -> HealthSignal:
    """A signal from (time, value) points in arrival order: interval to show, sequence to decide."""
    values = [v for _, v in points]
    shown = mean_interval(values)
    signal = HealthSignal(key=key, kind=kind, title=title, better=better, n=len(values),
                          value=_finite(shown.mean), low=_finite(shown.low), high=_finite(shown.high),
                          method="wilson" if all(v in (0.0, 1.0) for v in values) else "t", days=_days(points))
    if bounded and values:
        signal.low = None if signal.low is None else max(0.0, signal.low)  # a t interval may pass 0 or 1
        signal.high = None if signal.high is None else min(1.0, signal.high)
        cs = confidence_sequence(values, alpha=alpha)
        signal.cs_low, signal.cs_high = cs.low, cs.high
    if split is not None:
        before = [v for at, v in points if as_utc(at) < split]
        recent = [v for at, v in points if as_utc(at) >= split]
        signal.baseline, signal.baseline_n = (sum(before) / len(before) if before else None), len(before)
        signal.recent, signal.recent_n = (sum(recent) / len(recent) if recent else None), len(recent)
    return signal


def _finite(value: float) -> float | None:
    return value if isinstance(value, float) and math.isfinite(value) else None


def evaluator_points(calls: Sequence[Call], evaluators: Sequence[NamedEvaluator]) -> tuple[
        dict[str, list[tuple[datetime, float]]], dict[str, list[tuple[datetime, float]]], list[str]]:
    """Per evaluator key, (time, score) of the calls it could score; per format check, (time,
    failed); and notes on evaluators left out."""
    scores: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    formats: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    notes = []
    usable = []
    for named in evaluators:
        if named.evaluator.is_async:
            notes.append(f"{named.key}: an LLM judge; health makes no LLM calls, so it is left out")
        elif isinstance(named.evaluator, MatchesBaseline):
            pass  # agreement with its own output says nothing of the version itself
        else:
            usable.append(named)
    label_sets = _label_sets(evaluators)
    json_keys = {n.key for n in evaluators if isinstance(n.evaluator, (JsonValid, JsonSchema))}
    parse_only = not json_keys and any(isinstance(n.evaluator, JsonFields) for n in evaluators)
    failed: dict[str, tuple[int, str]] = {}
    for call in calls:
        if call.output is None:
            continue
        formats["format:empty"].append((call.at, 0.0 if call.output.strip() else 1.0))
        if label_sets:  # one check per answer: does it name exactly one label of the first label evaluator?
            _, labels, mode = label_sets[0]
            formats["format:no_label"].append((call.at, 0.0 if find_labels(call.output, labels, mode=mode)[0] else 1.0))
        if parse_only:  # json_fields scores fields; whether the answer is JSON at all is a format check
            formats["format:json"].append((call.at, 1.0 if parse_json(call.output)[1] else 0.0))
        ctx = EvalContext(output=call.output, inputs=call.inputs, expected=call.expected)
        for named in usable:
            try:
                score = normalise(named.evaluator.evaluate(ctx), evaluator=named.key).value
            except MissingReference:
                continue
            except Exception as exc:  # a plugin's bug: say so, and judge by the other signals
                failed[named.key] = failed.get(named.key, (0, exc.__class__.__name__))
                failed[named.key] = (failed[named.key][0] + 1, failed[named.key][1])
                continue
            scores[named.key].append((call.at, score))
            if named.key in json_keys:
                formats[f"format:{named.key}"].append((call.at, 1.0 - score))
    notes += [f"{key}: failed with {error} on {count} answers, which were left out (a bug in the evaluator)"
              for key, (count, error) in failed.items()]
    return scores, formats, notes


FORMAT_TITLES = {"format:empty": "answers that are empty", "format:json": "answers with no JSON in them",
                 "format:no_label": "answers that name no label (or several)"}


def label_check(key: str, pairs: Sequence[tuple[str | None, str]], labels: list[str], mode: str, *,
                alpha: float) -> LabelCheck | None:
    """Accuracy of the answers against always answering the most common gold label, on the same
    items (pairs of answer, gold), decided on an anytime-valid upper bound of the difference."""
    rows = []
    for output, expected in pairs:
        gold, _ = find_labels(expected, labels, mode="first")
        if gold is None:
            continue
        said, _ = find_labels(output or "", labels, mode=mode)
        rows.append((said, gold))
    if len(rows) < MIN_ITEMS:
        return None
    majority, count = Counter(g for _, g in rows).most_common(1)[0]
    right = [1.0 if s == g else 0.0 for s, g in rows]
    constant = [1.0 if g == majority else 0.0 for _, g in rows]
    diff = [(r - c + 1) / 2 for r, c in zip(right, constant)]  # in [0, 1]; 0.5 = as good as the constant
    upper = confidence_sequence(diff, alpha=alpha, side="upper").high * 2 - 1
    return LabelCheck(evaluator=key, n=len(rows), accuracy=sum(right) / len(rows), majority_label=majority,
                      majority_rate=count / len(rows), no_label_share=sum(s is None for s, _ in rows) / len(rows),
                      upper=upper, broken=upper < 0)


def _pct(value: float | None) -> str:
    if value is None:
        return "?"
    shown = f"{value * 100:.1f}".rstrip("0").rstrip(".") if value * 100 < 10 else f"{value * 100:.0f}"
    return f"{shown} %"


def label_reason(check: LabelCheck, gold_from: str | None) -> str:
    """"label: agrees with reviewer labels on 2 % of 180 items; always answering the most common
    label (negative) would score 41 %; 73 % of answers name no label"."""
    whose = "reviewer labels" if gold_from and gold_from.startswith("feedback") else "the gold labels"
    return (f"{check.evaluator}: agrees with {whose} on {_pct(check.accuracy)} of {check.n} items; always answering "
            f"the most common label ({check.majority_label}) would score {_pct(check.majority_rate)}; "
            f"{_pct(check.no_label_share)} of answers name no label")


# ---------------------------------------------------------------------------------------------
# Verdict


Series = dict[str, list[tuple[datetime, float]]]


def judge(report: HealthReport, config: HealthConfig, *, series: Series | None = None,
          split: datetime | None = None) -> HealthReport:
    """Set the verdict and the reasons from the report's signals and label checks; `series` (the
    signals' points in arrival order) and `split` (where the recent days start) for the trend."""
    broken: list[str] = []
    degraded: list[str] = []
    by_key = {s.key: s for s in report.signals}
    for check in report.label_checks:
        if check.broken:
            broken.append(label_reason(check, report.gold_from))
            if f"evaluator:{check.evaluator}" in by_key:
                by_key[f"evaluator:{check.evaluator}"].status = "broken"
    for s in report.signals:
        if s.better == "none":
            s.status = "info"
            continue
        if s.n < MIN_ITEMS or s.cs_low is None or s.cs_high is None or s.status == "broken":
            continue
        if s.kind == "format" and s.cs_low > config.unparseable_broken:
            s.status = "broken"
            broken.append(f"{s.key}: {_pct(s.value)} of {s.n} {s.title} (more than {_pct(config.unparseable_broken)})")
            continue
        low_floor = _floor(config.broken_below, s.key)
        if low_floor is not None and s.better == "higher" and s.cs_high < low_floor:
            s.status, s.floor = "broken", low_floor
            broken.append(f"{s.key}: {_pct(s.value)} of {s.n} ({s.title}), below its broken_below floor "
                          f"{_pct(low_floor)}")
            continue
        floor = _floor(config.floors, s.key)
        if floor is not None:
            s.floor = floor
            if (s.cs_high < floor) if s.better == "higher" else (s.cs_low > floor):
                s.status = "degraded"
                side = "below" if s.better == "higher" else "above"
                degraded.append(f"{s.key}: {_pct(s.value)} of {s.n} ({s.title}), {side} its floor {_pct(floor)}")
                continue
        why = _drop(s, (series or {}).get(s.key), split, config)
        if why:
            s.status = "degraded"
            degraded.append(why)
    quality = bool(report.label_checks) or any(
        s.kind in ("evaluator", "feedback") or s.key == "format:no_label" or s.key.startswith("format:json")
        for s in report.signals if s.n >= MIN_ITEMS)
    if broken:
        report.verdict, report.reasons = V.broken.value, broken + degraded
    elif degraded:
        report.verdict, report.reasons = V.degraded.value, degraded
    elif report.calls == 0:
        report.verdict = V.unknown.value
        report.reasons = [f"no calls of the production version in the last {report.window_days} days"]
    elif not quality:
        report.verdict = V.unknown.value
        report.reasons = [f"no quality signal in {report.calls} calls: no evaluator with gold answers, no feedback, "
                          "no answer format to check (set expected_from or evaluators for this prompt)"]
    else:
        report.verdict, report.reasons = V.healthy.value, []
    return report


def _floor(table: dict[str, float], key: str) -> float | None:
    """A floor given by the signal's key ("evaluator:label") or its short name ("label")."""
    return table.get(key, table.get(key.split(":", 1)[-1]))


def _drop(s: HealthSignal, points: Sequence[tuple[datetime, float]] | None, split: datetime | None,
          config: HealthConfig) -> str | None:
    """Why the recent days are significantly worse than the days before them, or None."""
    if not points or split is None or s.baseline is None or s.recent is None:
        return None
    before = [v for at, v in points if as_utc(at) < split]
    recent = [v for at, v in points if as_utc(at) >= split]
    if len(before) < MIN_ITEMS or len(recent) < MIN_ITEMS:
        return None
    half = config.alpha / 2
    if s.better == "higher":
        worse = (s.baseline - s.recent >= config.min_drop and confidence_sequence(recent, alpha=half, side="upper").high
                 < confidence_sequence(before, alpha=half, side="lower").low)
    else:
        worse = (s.recent - s.baseline >= config.min_drop and confidence_sequence(recent, alpha=half, side="lower").low
                 > confidence_sequence(before, alpha=half, side="upper").high)
    if not worse:
        return None
    return (f"{s.key}: {_pct(s.recent)} over the last {config.recent_days} days (n={len(recent)}) against "
            f"{_pct(s.baseline)} before (n={len(before)}) — {s.title}")


# ---------------------------------------------------------------------------------------------
# From the store


def evaluators_for(settings: Settings, prompt_name: str, calls: Sequence[Call]) -> list[NamedEvaluator]:
    """The prompt's configured evaluators, or the defaults its calls suggest (as a run picks them);
    none when the defaults would only compare the answers with themselves (no gold answers)."""
    configured = settings.prompts.get(prompt_name, {}).get("evaluators")
    if configured:
        return build_evaluators(configured, where=f"[prompts.{prompt_name}].evaluators")
    chosen = default_evaluators([_Row(c.expected, c.output) for c in calls])
    if "matches_baseline" in chosen:  # labels read off the answers themselves: every answer names one
        return []
    return build_evaluators(chosen, where=f"[prompts.{prompt_name}].evaluators")


@dataclass
class _Row:
    expected: str | None
    baseline_output: str | None


def assess(calls: Sequence[Call], evaluators: Sequence[NamedEvaluator], config: HealthConfig, *,
           report: HealthReport, split: datetime | None, skip_feedback: str | None = None) -> HealthReport:
    """Fill `report` with the signals of `calls` (in arrival order) and judge it."""
    alpha = config.alpha
    report.calls, report.alpha = len(calls), alpha
    scores, formats, notes = evaluator_points(calls, evaluators)
    report.notes += notes
    series: Series = {}
    signals = []
    for key, points in scores.items():
        title = f"score of evaluator {key}" + (" against gold answers" if any(c.expected for c in calls) else "")
        series[f"evaluator:{key}"] = points
        signals.append(_signal(f"evaluator:{key}", "evaluator", title, points, better="higher", alpha=alpha, split=split))
    for key, points in formats.items():
        series[key] = points
        title = FORMAT_TITLES.get(key, f"answers failing {key.split(':', 1)[1]} (JSON that does not parse or fits "
                                       "no schema)")
        signals.append(_signal(key, "format", title, points, better="lower", alpha=alpha, split=split))
    feedback: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    texts: set[str] = set()
    for call in calls:
        for entry in call.feedback:
            if not isinstance(entry, dict) or entry.get("name") in (None, skip_feedback):
                continue
            value = entry.get("value")
            if isinstance(value, bool):
                feedback[str(entry["name"])].append((call.at, 1.0 if value else 0.0))
            elif isinstance(value, (int, float)) and math.isfinite(value):
                feedback[str(entry["name"])].append((call.at, float(value)))
            elif isinstance(value, str):
                texts.add(str(entry["name"]))
    for name in sorted(texts - set(feedback)):
        report.notes.append(f"feedback {name!r} holds text (a label or a correction), not a score: not judged "
                            "(name it in expected_from to score the answers against it)")
    for name, points in sorted(feedback.items()):
        bounded = all(0.0 <= v <= 1.0 for _, v in points)
        key = f"feedback:{name}"
        series[key] = points
        signal = _signal(key, "feedback", f"feedback {name!r}" + ("" if bounded else " (not in [0, 1]: shown, "
                         "not judged)"), points, better="higher" if bounded else "none", alpha=alpha,
                         bounded=bounded, split=split)
        signals.append(signal)
    if calls:
        errors = [(c.at, 1.0 if c.error else 0.0) for c in calls]
        series["errors"] = errors
        signals.append(_signal("errors", "errors", "calls that failed at the provider", errors, better="lower",
                               alpha=alpha, split=split))
    costs = [(c.at, c.cost) for c in calls if c.cost is not None]
    if costs:
        signals.append(_signal("cost_per_call", "cost", "cost per call, $", costs, better="none", alpha=alpha,
                               bounded=False))
    latencies = [(c.at, c.latency_s) for c in calls if c.latency_s is not None]
    for q in (50, 95):
        if latencies:
            shown = percentile_interval([v for _, v in latencies], q)
            signals.append(HealthSignal(key=f"latency_p{q}_s", kind="latency", title=f"latency p{q}, seconds",
                                        better="none", n=shown.n, value=_finite(shown.mean), low=_finite(shown.low),
                                        high=_finite(shown.high), method="bootstrap", status="info",
                                        days=_percentile_days(latencies, q)))
    report.signals = signals
    report.label_checks = [c for c in (
        label_check(key, [(call.output, call.expected) for call in calls if call.expected is not None and
                          call.output is not None], labels, mode, alpha=alpha)
        for key, labels, mode in _label_sets(evaluators) if key in scores) if c is not None]
    return judge(report, config, series=series, split=split)


def _percentile_days(points: Sequence[tuple[datetime, float]], q: float) -> list[HealthDay]:
    by_day: dict[str, list[float]] = defaultdict(list)
    for at, value in points:
        by_day[as_utc(at).date().isoformat()].append(value)
    return [HealthDay(day=d, n=len(v), value=percentile_interval(v, q, n_boot=1).mean) for d, v in sorted(by_day.items())]


def prompt_health(session: Session, settings: Settings, *, prompt_id: int, now: datetime | None = None) -> HealthReport:
    """The health of the prompt's production version over its trailing window (no LLM calls)."""
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"no prompt with id {prompt_id}", where="prompt health", hint="list them: GET /prompts")
    config = health_config(settings, prompt.name)
    until = now or utcnow()
    since = until - timedelta(days=config.window_days)
    report = HealthReport(prompt_id=prompt_id, window_days=config.window_days, recent_days=config.recent_days,
                          since=since, until=until, alpha=config.alpha, checked_at=utcnow())
    try:
        version = production_version(session, prompt_id)
    except NotFound:
        report.reasons = ["no version labelled production: label one in your prompt store, then sync"]
        return report
    report.version_id, report.version_sha = version.id, version.sha
    expected_from = settings.prompts.get(prompt.name, {}).get("expected_from")
    report.gold_from = f"feedback {expected_from!r}" if expected_from else None
    logs = session.exec(select(LogRecord).where(
        LogRecord.version_id == version.id, LogRecord.called_at >= since, LogRecord.called_at <= until)  # type: ignore[operator]
        .order_by(col(LogRecord.called_at).desc(), col(LogRecord.id).desc()).limit(config.max_logs)).all()
    calls = [Call(at=log.called_at, output=log.output, inputs=log.inputs or {},
                  expected=_expected(log.feedback, expected_from), feedback=list(log.feedback or []),
                  error=is_error(log),
                  cost=log.cost if log.cost is not None and 0 <= log.cost <= MAX_COST_PER_CALL else None,
                  latency_s=log.latency_s if log.latency_s is not None and 0 <= log.latency_s <= MAX_LATENCY_S else None)
             for log in reversed(logs)]
    if len(logs) == config.max_logs:
        report.notes.append(f"read the newest {config.max_logs} calls of the window (health.max_logs)")
    evaluators = evaluators_for(settings, prompt.name, calls)
    return assess(calls, evaluators, config, report=report, split=until - timedelta(days=config.recent_days),
                  skip_feedback=expected_from)


def baseline_check(pairs: Sequence[tuple[str | None, str | None]], evaluators: Sequence[NamedEvaluator],
                   config: HealthConfig, *, dataset_id: int | None = None, gold_from: str | None = None) -> HealthReport:
    """The `broken` rules on a run's items: (the baseline's answer, the gold answer) per item.

    Label evaluators against always answering the most common label, and format failures; no
    trend (a dataset has no time order that means anything)."""
    now = utcnow()
    calls = [Call(at=now, output=output, expected=expected) for output, expected in pairs]
    report = HealthReport(source=f"dataset {dataset_id}" if dataset_id is not None else "dataset",
                          gold_from=gold_from, checked_at=now)
    return assess(calls, evaluators, config, report=report, split=None)


def record_health(session: Session, report: HealthReport) -> str | None:
    """Store the prompt's report; the verdict it had before when this call changed it, else None.

    The verdict changes by a conditional update, so of several workers storing the same change at
    once exactly one is told (and notifies)."""
    prompt_id = report.prompt_id
    assert prompt_id is not None
    now = report.checked_at or utcnow()
    row = session.exec(select(PromptHealth).where(PromptHealth.prompt_id == prompt_id)).first()
    if row is None:
        try:
            with session.begin_nested():
                session.add(PromptHealth(prompt_id=prompt_id, verdict=report.verdict, report=report, checked_at=now,
                                         changed_at=now))
            return V.unknown.value if report.verdict != V.unknown else None
        except IntegrityError:  # another worker stored it first: update it as below
            row = session.exec(select(PromptHealth).where(PromptHealth.prompt_id == prompt_id)).one()
    before = str(row.verdict)
    changed = 0
    if before != report.verdict:
        changed = session.execute(update(PromptHealth).where(
            col(PromptHealth.prompt_id) == prompt_id, col(PromptHealth.verdict) == before).values(
            verdict=report.verdict, changed_at=now)).rowcount
    session.execute(update(PromptHealth).where(col(PromptHealth.prompt_id) == prompt_id).values(
        report=report, checked_at=now))
    session.expire_all()
    return before if changed else None


def stored_verdicts(session: Session) -> dict[int, str]:
    """prompt id → its last stored verdict."""
    return {pid: str(v) for pid, v in session.exec(select(PromptHealth.prompt_id, PromptHealth.verdict)).all()}


