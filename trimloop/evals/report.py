"""The one comparison of baseline and candidate: paired per-item differences → a non-inferiority
verdict per evaluator. Certification decides with it, and it re-derives a suggestion's evidence
from the stored EvalRuns (`compare_runs`), so the two can never disagree.

Per evaluator: the baseline and candidate means, the delta, its interval, the verdict and n; the
candidate passes only when every evaluator passes (intersection–union: no correction needed).
Items are paired in a fixed order (item id, then sample), so the numbers do not depend on the
order the results arrived in, and re-deriving them from rows gives them exactly.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from trimloop.core.defaults import DEFAULT_ALPHA, DEFAULT_MARGIN
from trimloop.core.errors import NotFound, UserError
from trimloop.core.tables import DatasetItem, EvalRun
from trimloop.evals.runner import ItemResult, stored_results
from trimloop.evals.stats import Method, NonInferiority, non_inferiority


@dataclass(frozen=True)
class Comparison:
    margin: float
    alpha: float
    evaluators: list[str]
    verdicts: dict[str, NonInferiority]  # an evaluator with fewer than 2 paired items has none
    baseline_cost_per_call: float | None
    candidate_cost_per_call: float | None
    baseline_latency_p50_s: float | None
    candidate_latency_p50_s: float | None
    differing_items: list[Any] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.evaluators) and all(k in self.verdicts and self.verdicts[k].passed for k in self.evaluators)

    def to_dict(self) -> dict[str, Any]:
        return {
            "margin": self.margin, "alpha": self.alpha, "passed": self.passed,
            "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
            "baseline_cost_per_call": self.baseline_cost_per_call,
            "candidate_cost_per_call": self.candidate_cost_per_call,
            "baseline_latency_p50_s": self.baseline_latency_p50_s,
            "candidate_latency_p50_s": self.candidate_latency_p50_s,
            "differing_items": len(self.differing_items),
        }


def _order(item_id: Any) -> tuple[int, Any]:
    """Item ids sort as numbers when they are numbers (dataset items), else as text."""
    return (0, item_id) if isinstance(item_id, int) else (1, str(item_id))


def paired(baseline: Iterable[ItemResult], candidate: Iterable[ItemResult],
           key: str) -> tuple[dict[Any, list[float]], dict[Any, list[float]]]:
    """Both arms' scores for `key` on the items both have, item → sample scores (0 when the
    evaluator gave none), items in id order and samples in sample order."""
    def by_item(results: Iterable[ItemResult]) -> dict[Any, list[ItemResult]]:
        out: dict[Any, list[ItemResult]] = {}
        for r in results:
            out.setdefault(r.item_id, []).append(r)
        return out

    base, cand = by_item(baseline), by_item(candidate)
    common = sorted((i for i in base if i in cand), key=_order)
    scores = lambda rs: [float(r.scores.get(key, 0.0)) for r in sorted(rs, key=lambda r: r.sample)]  # noqa: E731
    return {i: scores(base[i]) for i in common}, {i: scores(cand[i]) for i in common}


def _cost(results: Sequence[ItemResult]) -> float | None:
    return statistics.fmean(r.cost for r in results) if results else None


def _p50(results: Sequence[ItemResult]) -> float | None:
    values = [r.latency_s for r in results if r.error is None]
    return statistics.median(values) if values else None


def compare_results(
    baseline: Iterable[ItemResult],
    candidate: Iterable[ItemResult],
    *,
    evaluators: Sequence[str],
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    margins: dict[str, float] | None = None,
    method: Method = "auto",
    seed: int = 0,
) -> Comparison:
    """Paired non-inferiority per evaluator on the items both arms scored (the samples of an item
    are its cluster). An evaluator with fewer than 2 paired items gets no verdict (and fails)."""
    baseline, candidate = list(baseline), list(candidate)
    if not evaluators:
        raise UserError("nothing to compare: no evaluators given", where="comparison",
                        hint="pass the evaluator keys the runs were scored with")
    verdicts = {}
    for key in evaluators:
        missing = [r.item_id for r in (*baseline, *candidate) if key not in r.scores and r.error is None]
        if missing:
            raise UserError(f"evaluator {key!r} has no score for item {missing[0]}", where="comparison",
                            hint="compare runs scored with the same evaluators")
        base, cand = paired(baseline, candidate, key)
        if len(base) >= 2:
            verdicts[key] = non_inferiority(base, cand, margin=(margins or {}).get(key, margin), alpha=alpha,
                                            method=method, seed=seed)
    base_out = {(r.item_id, r.sample): r.output for r in baseline}
    differing = sorted({r.item_id for r in candidate
                        if (r.item_id, r.sample) in base_out
                        and (r.output or "").strip() != (base_out[(r.item_id, r.sample)] or "").strip()},
                       key=_order)
    return Comparison(margin=margin, alpha=alpha, evaluators=list(evaluators), verdicts=verdicts,
                      baseline_cost_per_call=_cost(baseline), candidate_cost_per_call=_cost(candidate),
                      baseline_latency_p50_s=_p50(baseline), candidate_latency_p50_s=_p50(candidate),
                      differing_items=differing)


def eval_run(session: Session, eval_run_id: int) -> EvalRun:
    run = session.get(EvalRun, eval_run_id)
    if run is None:
        raise NotFound(f"no eval run with id {eval_run_id}", where="report",
                       hint="a suggestion's evidence names its eval runs (baseline_eval_run_id, candidate_eval_run_id)")
    return run


def compare_runs(session: Session, baseline_run_id: int, candidate_run_id: int, *,
                 evaluators: Sequence[str] | None = None, **kwargs: Any) -> Comparison:
    """`compare_results` on two stored EvalRuns of the same dataset split. The margins and α
    default to those the candidate's certification used (stored in its summary)."""
    base, cand = eval_run(session, baseline_run_id), eval_run(session, candidate_run_id)
    if (base.dataset_id, base.split) != (cand.dataset_id, cand.split):
        raise UserError(
            f"runs {baseline_run_id} and {candidate_run_id} are on different items "
            f"(dataset {base.dataset_id}/{base.split} vs {cand.dataset_id}/{cand.split})",
            where="comparison", hint="a paired comparison needs both runs on the same dataset split")
    keys = list(evaluators or [k for k in base.summary.get("evaluators", {}) if k in cand.summary.get("evaluators", {})])
    test = cand.summary.get("certification") or {}
    kwargs.setdefault("alpha", test.get("alpha", DEFAULT_ALPHA))
    kwargs.setdefault("margin", test.get("margin", DEFAULT_MARGIN))
    kwargs.setdefault("margins", test.get("margins"))
    return compare_results(stored_results(session, baseline_run_id).flat(),
                           stored_results(session, candidate_run_id).flat(), evaluators=keys, **kwargs)


@dataclass(frozen=True)
class ItemPair:
    """One item as both arms saw it: the baseline's result and the candidate's samples."""

    item_id: int
    inputs: dict[str, Any]
    expected: str | None
    baseline: ItemResult | None
    candidate: list[ItemResult]

    @property
    def differs(self) -> bool:
        """The candidate's output (any sample) differs from the baseline's, ignoring outer spaces."""
        base = ((self.baseline.output if self.baseline else None) or "").strip()
        return any((r.output or "").strip() != base for r in self.candidate)


def item_pairs(session: Session, baseline_run_id: int, candidate_run_id: int) -> list[ItemPair]:
    """The items the candidate was tested on, in id order, with both arms' stored results."""
    base, cand = stored_results(session, eval_run(session, baseline_run_id).id), stored_results(
        session, eval_run(session, candidate_run_id).id)
    ids = sorted(cand, key=_order)
    items = {i.id: i for i in session.exec(select(DatasetItem).where(col(DatasetItem.id).in_(ids)))} if ids else {}
    return [ItemPair(item_id=i, inputs=items[i].inputs if i in items else {},
                     expected=items[i].expected if i in items else None,
                     baseline=(base.get(i) or [None])[0], candidate=sorted(cand[i], key=lambda r: r.sample))
            for i in ids]
