"""Evaluate one PromptVersion on dataset items through the gateway.

`evaluate_items` is the pure API (no database: the optimizer races and certifies candidates
with it); its results, grouped by item, are a version's `Trials`. `store_eval_run` keeps trials as
an EvalRun with one EvalResult per item and sample (certification stores every arm it tested, so
a suggestion's evidence can be re-derived from rows), `stored_results` reads them back. Calls run
concurrently, bounded by `concurrency`. With temperature > 0 each item is sampled `samples` times,
with seed = sample index.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from trimloop.core.errors import GatewayError, SpendCapReached, TemplateError
from trimloop.core.identity import sha256_of
from trimloop.core.tables import EvalResult, EvalRun, utcnow
from trimloop.core.templates import Template, render
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
    reasoning_tokens: int = 0  # part of output_tokens (as the provider reported them)
    ttft_s: float | None = None  # time to first token, on streamed calls (EvalResult.ttft_s)


class Trials(dict[Any, list[ItemResult]]):
    """One version's trials on items: item id → its samples (ItemResult: output, scores, tokens,
    cost, latency). The one record behind a search arm, a certification and a stored EvalRun."""

    @classmethod
    def of(cls, results: Iterable[ItemResult]) -> Trials:
        trials = cls()
        for result in results:
            trials.add(result)
        return trials

    def add(self, result: ItemResult) -> None:
        self.setdefault(result.item_id, []).append(result)

    def flat(self) -> list[ItemResult]:
        return [r for rs in self.values() for r in rs]

    @property
    def calls(self) -> int:
        return sum(len(rs) for rs in self.values())

    @property
    def cost_per_call(self) -> float | None:
        costs = [r.cost for rs in self.values() for r in rs if r.error is None]
        return statistics.fmean(costs) if costs else None

    @property
    def latency_p50(self) -> float | None:
        values = [r.latency_s for rs in self.values() for r in rs if r.error is None]
        return statistics.median(values) if values else None

    def scores(self, key: str) -> dict[Any, list[float]]:
        """Item → the score of each sample (0 when the evaluator gave none)."""
        return {item: [r.scores.get(key, 0.0) for r in rs] for item, rs in self.items()}

    def mean_score(self, key: str) -> float | None:
        """The mean over items of each item's mean over samples."""
        per_item = [statistics.fmean(v) for v in self.scores(key).values() if v]
        return statistics.fmean(per_item) if per_item else None


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
    propagate: tuple[type[BaseException], ...] = (), scope: str | None = None,
) -> ItemResult:
    """One call and its scores. A failed call or a template problem is recorded, scoring 0,
    unless it is one of `propagate`, which is raised. `scope`: the gateway's cache scope."""
    try:
        prompt = render(template, item.inputs)
        kwargs: dict[str, Any] = {"messages": prompt} if isinstance(prompt, list) else {"text": prompt}
        if scope is not None:
            kwargs["scope"] = scope
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
        latency_s=result.latency_s, cached=result.cached, reasoning_tokens=result.reasoning_tokens or 0,
        ttft_s=getattr(result, "ttft_s", None),
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


def store_eval_run(
    session: Session,
    *,
    version_id: int,
    dataset_id: int,
    split: str,
    results: Iterable[ItemResult],
    evaluators: Sequence[NamedEvaluator],
    samples: int = 1,
    run_id: int | None = None,
    expected: dict[Any, str | None] | None = None,
    summary: dict[str, Any] | None = None,
) -> EvalRun:
    """Store one version's results on dataset items as an EvalRun (one EvalResult per item and
    sample) with its `summarize` numbers, plus `summary` (e.g. the certification it was part of)."""
    results = list(results)
    config = evaluator_config(evaluators)
    run = EvalRun(version_id=version_id, dataset_id=dataset_id, split=split, samples=samples, run_id=run_id,
                  status="done", finished_at=utcnow(),
                  summary={"evaluators": config, "evaluators_sha": sha256_of(config)}
                  | summarize(results, evaluators, expected) | dict(summary or {}))
    session.add(run)
    session.flush()
    session.add_all(EvalResult(
        eval_run_id=run.id, item_id=int(r.item_id), sample=r.sample, output=r.output, scores=dict(r.scores),
        reasons=dict(r.reasons), input_tokens=r.input_tokens, output_tokens=r.output_tokens, cost=r.cost,
        latency_s=r.latency_s, ttft_s=r.ttft_s, cached=r.cached, error=r.error) for r in results)
    session.flush()
    return run


def _as_item_result(row: EvalResult) -> ItemResult:
    return ItemResult(item_id=row.item_id, sample=row.sample, output=row.output,
                      scores=dict(row.scores), reasons=dict(row.reasons),
                      input_tokens=row.input_tokens, output_tokens=row.output_tokens, cost=row.cost,
                      latency_s=row.latency_s, ttft_s=row.ttft_s, cached=row.cached, error=row.error)


def stored_results(session: Session, eval_run_id: int) -> Trials:
    """An EvalRun's results, by item in item and sample order."""
    rows = session.exec(select(EvalResult).where(EvalResult.eval_run_id == eval_run_id)
                        .order_by(col(EvalResult.item_id), col(EvalResult.sample))).all()
    return Trials.of(_as_item_result(r) for r in rows)

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
