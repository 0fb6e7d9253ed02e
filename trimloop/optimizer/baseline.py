"""The baseline's side of every comparison, from its logs: outputs, scores, tokens, cost, latency.

An item from the logs is never re-run: its logged output is scored (free, unless an evaluator is
an LLM judge), its cost is its logged tokens at catalog prices (so candidate and baseline are
priced the same way), and its latency is the logged one. An item of an imported gold set that
came without a baseline output is run once through the baseline version, like a candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from trimloop.core import traffic
from trimloop.core.catalog import ResolvedModel, count_message_tokens, count_tokens
from trimloop.core.errors import TemplateError
from trimloop.core.tables import MAX_COST_PER_CALL, MAX_LATENCY_S, DatasetItem, LogRecord
from trimloop.core.templates import render
from trimloop.core.usage import TokenUsage
from trimloop.evals.evaluators import EvalContext, NamedEvaluator, score_output
from trimloop.evals.runner import EvalItem, ItemResult, evaluate_items
from trimloop.optimizer.caching import CacheTraffic
from trimloop.optimizer.spec import VersionSpec


@dataclass
class LogFacts:
    """What the logs say: per-item tokens/latency, and the prompt's traffic for savings."""

    per_item: dict[int, LogRecord] = field(default_factory=dict)
    call_times: list[datetime] = field(default_factory=list)
    call_weights: list[float] = field(default_factory=list)  # calls each log stands for: 1 / sample_rate
    logged_costs: list[float] = field(default_factory=list)
    cost_weights: list[float] = field(default_factory=list)  # the weight of each logged cost
    latencies: list[float] = field(default_factory=list)
    cache: CacheTraffic = field(default_factory=CacheTraffic)  # the baseline's prompt-cache reads and writes


def log_facts(session: Session, rows: Sequence[DatasetItem], *, prompt_id: int) -> LogFacts:
    facts = LogFacts()
    ids = [r.log_id for r in rows if r.log_id is not None]
    for start in range(0, len(ids), 500):
        for log in session.exec(select(LogRecord).where(col(LogRecord.id).in_(ids[start:start + 500]))):
            facts.per_item[log.id] = log  # type: ignore[index]
    by_log = {r.log_id: r.id for r in rows if r.log_id is not None}
    facts.per_item = {by_log[k]: v for k, v in facts.per_item.items() if k in by_log}
    baseline_ids = {r.version_id for r in facts.per_item.values()}
    # the prompt's records: those of its versions (ix_logrecord_version_time) and those that named
    # none (ix_logrecord_unversioned); no index holds a prompt's records as such
    versions = traffic.versions_of(session.connection(), [prompt_id])
    query = select(LogRecord.called_at, LogRecord.cost, LogRecord.latency_s, LogRecord.version_id,
                   LogRecord.sample_rate, LogRecord.input_tokens, LogRecord.cached_input_tokens,
                   LogRecord.cache_write_tokens).where(
        LogRecord.prompt_id == prompt_id,
        or_(col(LogRecord.version_id).in_(versions), col(LogRecord.version_id).is_(None)))
    scales = traffic.day_scales(session.connection(), prompt_id=prompt_id)  # days the reservoir thinned
    for called_at, cost, latency, version_id, rate, tokens, cached, written in session.exec(query):
        weight = 1.0 / rate if rate is not None and 0 < rate <= 1 else 1.0
        if scales:
            weight *= scales.get((version_id, traffic.utc_day(called_at)), 1.0)
        facts.call_times.append(called_at)
        facts.call_weights.append(weight)
        if version_id in baseline_ids:
            facts.cache = facts.cache.add(tokens, cached, written)
            if cost is not None and 0 <= cost <= MAX_COST_PER_CALL:  # stored before sync checked bounds
                facts.logged_costs.append(float(cost))
                facts.cost_weights.append(weight)
            if latency is not None and 0 <= latency <= MAX_LATENCY_S:
                facts.latencies.append(float(latency))
    return facts


def item_cost(model: ResolvedModel, version: VersionSpec, row: DatasetItem, log: LogRecord | None) -> tuple[float, int, int]:
    """(cost, input tokens, output tokens) of the baseline on this item at catalog prices, its
    logged reasoning tokens priced as reasoning (core.pricing); no cache (the projection adds it)."""
    tin = log.input_tokens if log is not None else None
    tout = log.output_tokens if log is not None else None
    if tin is None:
        try:
            prompt = render(version.template, row.inputs)
            tin = count_message_tokens(prompt) if isinstance(prompt, list) else count_tokens(prompt)
        except TemplateError:
            tin = 0
    if tout is None:
        tout = count_tokens(row.baseline_output or "")
    reasoning = log.reasoning_tokens if log is not None else None
    if reasoning:
        priced = model.cost(TokenUsage(tin, tout, reasoning=reasoning))
        if priced is not None:
            return priced, tin, tout
    return model.price(tin, tout), tin, tout


async def baseline_results(rows: Sequence[DatasetItem], facts: LogFacts, version: VersionSpec,
                           evaluators: Sequence[NamedEvaluator], *, resolve: Callable[[str], ResolvedModel],
                           gateway: Any, ledger: Any, concurrency: int = 4) -> dict[int, ItemResult]:
    model = resolve(version.model)
    out: dict[int, ItemResult] = {}
    unlogged = [r for r in rows if r.baseline_output is None and r.id not in facts.per_item]
    if unlogged:
        results = await evaluate_items(
            template=version.template, model=version.model, params=version.params, samples=1,
            items=[EvalItem(id=r.id, inputs=r.inputs, expected=r.expected) for r in unlogged],  # type: ignore[arg-type]
            evaluators=evaluators, gateway=gateway, ledger=ledger, concurrency=concurrency)
        out.update({r.item_id: r for r in results})  # type: ignore[misc]
    for row in rows:
        if row.id in out:
            continue
        log = facts.per_item.get(row.id)  # type: ignore[arg-type]
        output = row.baseline_output or ""
        ctx = EvalContext(output=output, inputs=row.inputs, expected=row.expected,
                          baseline_output=row.baseline_output, item_id=row.id, gateway=gateway, ledger=ledger)
        scores = await score_output(list(evaluators), ctx)
        cost, tin, tout = item_cost(model, version, row, log)
        out[row.id] = ItemResult(  # type: ignore[index]
            item_id=row.id, sample=0, output=output, scores={k: s.value for k, s in scores.items()},
            input_tokens=tin, output_tokens=tout, cost=cost,
            latency_s=float(log.latency_s) if log is not None and log.latency_s is not None else 0.0,
            cached=True, reasoning_tokens=min(tout, log.reasoning_tokens or 0) if log is not None else 0,
        )
    return out
