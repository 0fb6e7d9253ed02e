"""Reports: a run's per-item table and summary, and baseline vs candidate per evaluator.

`compare_results` is the plain comparison (the optimizer certifies with it): per evaluator the
baseline and candidate means, the delta, its interval, the non-inferiority verdict and n; the
candidate passes only when every evaluator passes (intersection–union: no correction needed).
The `*_frame` functions turn stored runs into pandas DataFrames for people.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine
from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.defaults import DEFAULT_ALPHA, DEFAULT_MARGIN
from trimloop.core.errors import NotFound, UserError
from trimloop.core.tables import DatasetItem, EvalRun
from trimloop.evals.runner import ItemResult, stored_results
from trimloop.evals.stats import Method, NonInferiority, non_inferiority


@dataclass(frozen=True)
class Comparison:
    margin: float
    alpha: float
    verdicts: dict[str, NonInferiority]
    baseline_cost_per_call: float | None
    candidate_cost_per_call: float | None
    baseline_latency_p50_s: float | None
    candidate_latency_p50_s: float | None
    differing_items: list[Any] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.verdicts) and all(v.passed for v in self.verdicts.values())

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


def _by_item(results: Sequence[ItemResult], key: str) -> dict[Any, list[float]]:
    out: dict[Any, list[float]] = {}
    for r in results:
        out.setdefault(r.item_id, []).append(float(r.scores.get(key, 0.0)))
    return out


def _cost(results: Sequence[ItemResult]) -> float | None:
    return statistics.fmean(r.cost for r in results) if results else None


def _p50(results: Sequence[ItemResult]) -> float | None:
    values = [r.latency_s for r in results if r.error is None]
    return statistics.median(values) if values else None


def compare_results(
    baseline: Sequence[ItemResult],
    candidate: Sequence[ItemResult],
    *,
    evaluators: Sequence[str],
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    margins: dict[str, float] | None = None,
    method: Method = "auto",
    seed: int = 0,
) -> Comparison:
    """Paired non-inferiority per evaluator on the items both runs scored."""
    if not evaluators:
        raise UserError("nothing to compare: no evaluators given", where="comparison",
                        hint="pass the evaluator keys the runs were scored with")
    verdicts = {}
    for key in evaluators:
        missing = [r.item_id for r in (*baseline, *candidate) if key not in r.scores and r.error is None]
        if missing:
            raise UserError(f"evaluator {key!r} has no score for item {missing[0]}", where="comparison",
                            hint="compare runs scored with the same evaluators")
        verdicts[key] = non_inferiority(_by_item(baseline, key), _by_item(candidate, key),
                                        margin=(margins or {}).get(key, margin), alpha=alpha,
                                        method=method, seed=seed)
    base_out = {(r.item_id, r.sample): r.output for r in baseline}
    differing = sorted({r.item_id for r in candidate
                        if (r.item_id, r.sample) in base_out
                        and (r.output or "").strip() != (base_out[(r.item_id, r.sample)] or "").strip()},
                       key=str)
    return Comparison(margin=margin, alpha=alpha, verdicts=verdicts,
                      baseline_cost_per_call=_cost(baseline), candidate_cost_per_call=_cost(candidate),
                      baseline_latency_p50_s=_p50(baseline), candidate_latency_p50_s=_p50(candidate),
                      differing_items=differing)


def _run(engine: Engine, eval_run_id: int) -> EvalRun:
    with session_scope(engine) as session:
        run = session.get(EvalRun, eval_run_id)
        if run is None:
            raise NotFound(f"no eval run with id {eval_run_id}", where="report",
                           hint="list eval runs of a prompt, or run the evaluation first")
        return run


def compare_runs(engine: Engine, baseline_run_id: int, candidate_run_id: int, **kwargs: Any) -> Comparison:
    """`compare_results` on two stored EvalRuns of the same dataset split."""
    base, cand = _run(engine, baseline_run_id), _run(engine, candidate_run_id)
    if (base.dataset_id, base.split) != (cand.dataset_id, cand.split):
        raise UserError(
            f"runs {baseline_run_id} and {candidate_run_id} are on different items "
            f"(dataset {base.dataset_id}/{base.split} vs {cand.dataset_id}/{cand.split})",
            where="comparison", hint="a paired comparison needs both runs on the same dataset split")
    keys = kwargs.pop("evaluators", None) or [
        k for k in base.summary.get("evaluators", {}) if k in cand.summary.get("evaluators", {})]
    return compare_results(stored_results(engine, baseline_run_id), stored_results(engine, candidate_run_id),
                           evaluators=keys, **kwargs)


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """One row per evaluator: baseline, candidate, delta, interval, verdict, n."""
    rows = [{"evaluator": key, "baseline": v.baseline_mean, "candidate": v.candidate_mean,
             "delta": v.delta, "lower": v.lower, "upper": v.upper, "margin": v.margin,
             "verdict": v.verdict, "n": v.n, "samples": v.samples, "method": v.method,
             "p_value": v.p_value} for key, v in comparison.verdicts.items()]
    return pd.DataFrame(rows, columns=["evaluator", "baseline", "candidate", "delta", "lower", "upper",
                                       "margin", "verdict", "n", "samples", "method", "p_value"])


def _items(engine: Engine, dataset_id: int) -> dict[int, DatasetItem]:
    with session_scope(engine) as session:
        return {i.id: i for i in session.exec(select(DatasetItem).where(DatasetItem.dataset_id == dataset_id)).all()}  # type: ignore[misc]


def run_frame(engine: Engine, eval_run_id: int) -> pd.DataFrame:
    """Per item and sample: inputs, expected, output, each score, tokens, cost, latency, cached."""
    run = _run(engine, eval_run_id)
    items = _items(engine, run.dataset_id)
    rows = []
    for r in stored_results(engine, eval_run_id):
        item = items.get(int(r.item_id))
        rows.append({"item_id": r.item_id, "position": item.position if item else None,
                     "sample": r.sample, "inputs": item.inputs if item else None,
                     "expected": item.expected if item else None, "output": r.output,
                     **{f"score.{k}": v for k, v in r.scores.items()},
                     "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                     "cost": r.cost, "latency_s": r.latency_s, "cached": r.cached, "error": r.error})
    return pd.DataFrame(rows)


def run_summary(engine: Engine, eval_run_id: int) -> dict[str, Any]:
    """The stored summary of a finished run (scores, tokens, cost, latency, label metrics)."""
    run = _run(engine, eval_run_id)
    return {"eval_run_id": run.id, "version_id": run.version_id, "dataset_id": run.dataset_id,
            "split": run.split, "samples": run.samples, "status": run.status} | dict(run.summary)


def differences_frame(engine: Engine, baseline_run_id: int, candidate_run_id: int) -> pd.DataFrame:
    """The items where the candidate's output differs from the baseline's, side by side."""
    base, cand = run_frame(engine, baseline_run_id), run_frame(engine, candidate_run_id)
    if base.empty or cand.empty:
        return pd.DataFrame(columns=["item_id", "sample", "inputs", "expected", "output_baseline",
                                     "output_candidate"])
    merged = base.merge(cand, on=["item_id", "sample"], suffixes=("_baseline", "_candidate"))
    strip = lambda s: s.fillna("").str.strip()  # noqa: E731
    differ = merged[strip(merged["output_baseline"]) != strip(merged["output_candidate"])]
    keep = ["item_id", "sample", "inputs_baseline", "expected_baseline", "output_baseline",
            "output_candidate"] + [c for c in merged.columns if c.startswith("score.")]
    return differ[keep].rename(columns={"inputs_baseline": "inputs", "expected_baseline": "expected"}).reset_index(drop=True)
