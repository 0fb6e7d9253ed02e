"""Evaluate one PromptVersion on dataset items through the gateway.

`evaluate_items` is the pure API (no database: the optimizer races candidates with it);
`run_eval` stores an EvalRun with one EvalResult per item and sample, and is resumable: a rerun
finds the run, keeps the stored results and only evaluates what is missing (failed items are
retried), while the gateway's cache makes repeated calls free. Calls run concurrently, bounded by
`concurrency`. With temperature > 0 each item is sampled `samples` times, with seed = sample index.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.errors import GatewayError, NotFound, SpendCapReached, TemplateError
from trimloop.core.identity import sha256_of
from trimloop.core.tables import EvalResult, EvalRun, PromptVersion, utcnow
from trimloop.core.templates import Template, render
from trimloop.evals.datasets import dataset_items
from trimloop.evals.evaluators import EvalContext, NamedEvaluator, find_labels, label_metrics, score_output

DEFAULT_SAMPLES_WHEN_RANDOM = 3


@dataclass(frozen=True)
class EvalItem:
    """What the runner needs of an item (a DatasetItem, or anything the optimizer builds)."""

    id: int | str
    inputs: dict[str, Any]
    expected: str | None = None
    baseline_output: str | None = None


@dataclass(frozen=True)
class ItemResult:
    item_id: int | str
    sample: int
    output: str | None
    scores: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, Any] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None


def samples_for(params: dict[str, Any], samples: int | None) -> int:
    """1 at temperature 0 (or unset); `samples` (default 3) when the version samples randomly."""
    if samples is not None:
        if samples < 1:
            raise ValueError(f"samples must be ≥ 1, got {samples}")
        return samples
    return DEFAULT_SAMPLES_WHEN_RANDOM if float(params.get("temperature") or 0) > 0 else 1


async def evaluate_one(
    *, template: Template, model: str, params: dict[str, Any], item: EvalItem, sample: int,
    evaluators: Sequence[NamedEvaluator], gateway: Any, ledger: Any = None, seeded: bool = False,
    propagate: tuple[type[BaseException], ...] = (),
) -> ItemResult:
    """One call and its scores. A failed call or a template problem is recorded, scoring 0,
    unless it is one of `propagate`, which is raised."""
    try:
        prompt = render(template, item.inputs)
        kwargs = {"messages": prompt} if isinstance(prompt, list) else {"text": prompt}
        result = await gateway.call(model, params=params, seed=sample if seeded else None,
                                    ledger=ledger, **kwargs)
    except (GatewayError, TemplateError) as exc:
        if isinstance(exc, propagate):
            raise
        return ItemResult(item_id=item.id, sample=sample, output=None,
                          scores={n.key: 0.0 for n in evaluators},
                          reasons={n.key: {"reason": "no output: the call failed"} for n in evaluators},
                          error=str(exc))
    ctx = EvalContext(output=result.output, inputs=item.inputs, expected=item.expected,
                      baseline_output=item.baseline_output, item_id=item.id, gateway=gateway,
                      ledger=ledger)
    scores = await score_output(list(evaluators), ctx)
    reasons = {
        key: {k: v for k, v in (("reason", s.reason), ("label", s.label)) if v is not None}
        for key, s in scores.items() if s.reason is not None or s.label is not None
    }
    return ItemResult(
        item_id=item.id, sample=sample, output=result.output,
        scores={k: s.value for k, s in scores.items()}, reasons=reasons,
        # an unknown price (None) counts as 0 here: eval sums compare candidates priced alike, and
        # retarget never proposes a model without a price
        input_tokens=result.input_tokens, output_tokens=result.output_tokens, cost=result.cost or 0.0,
        latency_s=result.latency_s, cached=result.cached,
    )


async def evaluate_items(
    *,
    template: Template | dict[str, Any],
    model: str,
    params: dict[str, Any] | None,
    items: Sequence[EvalItem],
    evaluators: Sequence[NamedEvaluator],
    gateway: Any,
    samples: int | None = None,
    concurrency: int = 8,
    ledger: Any = None,
    skip: frozenset[tuple[Any, int]] = frozenset(),
    on_result: Any = None,
    propagate: tuple[type[BaseException], ...] = (),
) -> list[ItemResult]:
    """Evaluate a version (template + model + params) on items; results in item, sample order.

    `skip` holds (item id, sample) pairs already done; `on_result(result)` is called as each
    result arrives (the DB runner stores it there, so an interrupted run keeps its progress).
    A call that fails with one of `propagate` (e.g. ProviderUnavailable) is not scored: once every
    other item has finished, the first such error (or a SpendCapReached) is raised. Waiting for the
    others means no call is still in flight, or unaccounted in the ledger, when this returns.
    """
    template = template if isinstance(template, Template) else Template.model_validate(template)
    params = dict(params or {})
    n_samples = samples_for(params, samples)
    seeded = float(params.get("temperature") or 0) > 0
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(item: EvalItem, sample: int) -> ItemResult:
        async with limit:
            result = await evaluate_one(template=template, model=model, params=params, item=item,
                                        sample=sample, evaluators=evaluators, gateway=gateway,
                                        ledger=ledger, seeded=seeded, propagate=propagate)
        if on_result is not None:
            on_result(result)
        return result

    jobs = [one(item, s) for item in items for s in range(n_samples) if (item.id, s) not in skip]
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:  # a budget that ran out matters less than anything else that went wrong
        raise next((e for e in errors if not isinstance(e, SpendCapReached)), errors[0])
    return list(outcomes)  # type: ignore[arg-type]


def evaluator_config(evaluators: Sequence[NamedEvaluator]) -> dict[str, Any]:
    return {n.key: n.evaluator.options() for n in evaluators}


async def run_eval(
    engine: Engine,
    *,
    version_id: int,
    dataset_id: int,
    split: str,
    evaluators: Sequence[NamedEvaluator],
    gateway: Any,
    samples: int | None = None,
    concurrency: int = 8,
    run_id: int | None = None,
    ledger: Any = None,
) -> EvalRun:
    """Evaluate a stored version on a dataset split, storing results; resumes a matching run."""
    config = evaluator_config(evaluators)
    with session_scope(engine) as session:
        version = session.get(PromptVersion, version_id)
        if version is None:
            raise NotFound(f"no prompt version with id {version_id}", where="eval run",
                           hint="pick a version id from GET /prompts/{id}/versions")
        items = dataset_items(session, dataset_id, split)
        if not items:
            raise NotFound(f"dataset {dataset_id} has no {split} items", where="eval run",
                           hint="build the dataset first, or use the other split")
        n_samples = samples_for(version.params, samples)
        fingerprint = sha256_of(config)
        run = session.exec(
            select(EvalRun).where(EvalRun.version_id == version_id, EvalRun.dataset_id == dataset_id,
                                  EvalRun.split == split, EvalRun.samples == n_samples,
                                  EvalRun.run_id == run_id)
        ).all()
        run = next((r for r in run if r.summary.get("evaluators_sha") == fingerprint), None)
        if run is None:
            run = EvalRun(version_id=version_id, dataset_id=dataset_id, split=split,
                          samples=n_samples, run_id=run_id,
                          summary={"evaluators": config, "evaluators_sha": fingerprint})
            session.add(run)
            session.flush()
        run.status = "running"
        stored = session.exec(select(EvalResult).where(EvalResult.eval_run_id == run.id)).all()
        for failed in [r for r in stored if r.error is not None]:
            session.delete(failed)  # retried below
        done = frozenset((r.item_id, r.sample) for r in stored if r.error is None)
        run_pk, template, model, params = run.id, version.template, version.model, dict(version.params)
        eval_items = [EvalItem(i.id, i.inputs, i.expected, i.baseline_output) for i in items]  # type: ignore[arg-type]

    def store(result: ItemResult) -> None:
        with session_scope(engine) as session:
            session.add(EvalResult(
                eval_run_id=run_pk, item_id=int(result.item_id), sample=result.sample,
                output=result.output, scores=result.scores, reasons=result.reasons,
                input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                cost=result.cost, latency_s=result.latency_s, cached=result.cached,
                error=result.error))

    try:
        await evaluate_items(template=template, model=model, params=params, items=eval_items,
                             evaluators=evaluators, gateway=gateway, samples=n_samples,
                             concurrency=concurrency, ledger=ledger, skip=done, on_result=store)
    except BaseException:
        with session_scope(engine) as session:
            run_row = session.get(EvalRun, run_pk)
            if run_row is not None:
                run_row.status = "interrupted"
        raise
    with session_scope(engine) as session:
        run_row = session.get(EvalRun, run_pk)
        assert run_row is not None
        results = session.exec(select(EvalResult).where(EvalResult.eval_run_id == run_pk)).all()
        items_by_id = {i.id: i for i in items}
        run_row.summary = {"evaluators": config, "evaluators_sha": fingerprint} | summarize(
            [_as_item_result(r) for r in results], evaluators, {k: v.expected for k, v in items_by_id.items()})
        run_row.status = "done"
        run_row.finished_at = utcnow()
        session.add(run_row)
    with session_scope(engine) as session:
        final = session.get(EvalRun, run_pk)
        assert final is not None
        return final


def _as_item_result(row: EvalResult) -> ItemResult:
    return ItemResult(item_id=row.item_id, sample=row.sample, output=row.output,
                      scores=dict(row.scores), reasons=dict(row.reasons),
                      input_tokens=row.input_tokens, output_tokens=row.output_tokens, cost=row.cost,
                      latency_s=row.latency_s, cached=row.cached, error=row.error)


def stored_results(engine: Engine, eval_run_id: int) -> list[ItemResult]:
    """An EvalRun's results as ItemResults, in item and sample order."""
    with session_scope(engine) as session:
        rows = session.exec(select(EvalResult).where(EvalResult.eval_run_id == eval_run_id)
                            .order_by(EvalResult.item_id, EvalResult.sample)).all()
        return [_as_item_result(r) for r in rows]



def summarize(results: Sequence[ItemResult], evaluators: Sequence[NamedEvaluator],
              expected: dict[Any, str | None] | None = None) -> dict[str, Any]:
    """Run-level numbers: item-level mean per evaluator, tokens, cost, latency, label metrics."""
    by_item: dict[Any, list[ItemResult]] = {}
    for r in results:
        by_item.setdefault(r.item_id, []).append(r)
    means = {}
    for named in evaluators:
        per_item = [statistics.fmean(r.scores.get(named.key, 0.0) for r in rs) for rs in by_item.values()]
        means[named.key] = statistics.fmean(per_item) if per_item else None
    calls = len(results)
    latencies = [r.latency_s for r in results if r.error is None]
    summary: dict[str, Any] = {
        "items": len(by_item), "results": calls, "errors": sum(r.error is not None for r in results),
        "cached": sum(r.cached for r in results), "scores": means,
        "input_tokens": sum(r.input_tokens for r in results),
        "output_tokens": sum(r.output_tokens for r in results),
        "cost": sum(r.cost for r in results),
        "cost_per_call": sum(r.cost for r in results) / calls if calls else None,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_mean_s": statistics.fmean(latencies) if latencies else None,
    }
    metrics = {}
    for named in evaluators:
        labels = getattr(named.evaluator, "labels", None)
        if not labels or expected is None or getattr(named.evaluator, "against", "expected") != "expected":
            continue
        gold, predicted = [], []
        for r in results:
            want = expected.get(r.item_id)
            gold.append(find_labels(want, labels, mode="first")[0] if want is not None else None)
            predicted.append((r.reasons.get(named.key) or {}).get("label"))
        m = label_metrics(gold, predicted, labels)
        metrics[named.key] = {"accuracy": m.accuracy, "macro_f1": m.macro_f1, "n": m.n,
                              "unparsed": m.unparsed, "per_label": m.per_label}
    if metrics:
        summary["label_metrics"] = metrics
    return summary
