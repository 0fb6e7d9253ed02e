"""Reports: baseline vs candidate per evaluator, the differing items, the per-item table."""

from __future__ import annotations

import pytest

from trimloop.core.errors import NotFound, UserError
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.report import (
    compare_results, compare_runs, comparison_frame, differences_frame, run_frame, run_summary,
)
from trimloop.evals.runner import ItemResult, run_eval
from trimloop.testing.fake_provider import FakeProvider

from tests.evals.helpers import add_logs, add_prompt, add_version, fake_gateway

EVALS = build_evaluators({"label": {"labels": ["positive", "negative"], "against": "baseline"}})


def _results(scores, outputs=None, cost=1.0):
    return [ItemResult(item_id=i, sample=0, output=(outputs or ["x"] * len(scores))[i],
                       scores={"label": s}, cost=cost, latency_s=0.5) for i, s in enumerate(scores)]


def test_compare_results_passes_an_equal_cheaper_candidate() -> None:
    base = _results([1.0] * 900 + [0.0] * 100, cost=2.0)
    cand = _results([1.0] * 900 + [0.0] * 100, cost=0.5)
    comparison = compare_results(base, cand, evaluators=["label"], margin=0.02)
    verdict = comparison.verdicts["label"]
    assert comparison.passed and verdict.n == 1000 and verdict.delta == 0.0 and verdict.method == "tango"
    assert (comparison.baseline_cost_per_call, comparison.candidate_cost_per_call) == (2.0, 0.5)
    frame = comparison_frame(comparison)
    assert list(frame.columns[:8]) == ["evaluator", "baseline", "candidate", "delta", "lower", "upper",
                                       "margin", "verdict"]
    assert frame.loc[0, "verdict"] == "non-inferior" and comparison.to_dict()["passed"] is True


def test_compare_results_fails_a_worse_candidate_and_lists_differences() -> None:
    base = _results([1.0] * 100, outputs=["positive"] * 100)
    cand = _results([1.0] * 80 + [0.0] * 20, outputs=["positive"] * 80 + ["negative"] * 20)
    comparison = compare_results(base, cand, evaluators=["label"])
    assert not comparison.passed and comparison.verdicts["label"].verdict == "inferior"
    assert comparison.differing_items == list(range(80, 100))
    with pytest.raises(UserError, match="no score"):
        compare_results(base, cand, evaluators=["rouge"])
    with pytest.raises(UserError, match="no evaluators"):
        compare_results(base, cand, evaluators=[])


async def test_reports_on_stored_runs(engine) -> None:
    prompt = add_prompt(engine)
    baseline = add_version(engine, prompt)
    cheaper = add_version(engine, prompt, model="fake/cheap", labels=())
    add_logs(engine, prompt, baseline, [(f"film {i}", "negative" if i % 4 == 0 else "positive") for i in range(40)])
    from trimloop.core.db import session_scope
    from trimloop.evals.datasets import build_from_logs

    with session_scope(engine) as session:
        dataset = build_from_logs(session, prompt_id=prompt, holdout_fraction=0.5).id
    # The baseline repeats its logged answers; the candidate says "positive" to everything.
    logged = {f"film {i}": "negative" if i % 4 == 0 else "positive" for i in range(40)}
    base_gw = fake_gateway(FakeProvider(responder=lambda m, p: logged[p.split("Review: ")[1].split("\n")[0]]))
    a = await run_eval(engine, version_id=baseline, dataset_id=dataset, split="holdout", evaluators=EVALS, gateway=base_gw)
    b = await run_eval(engine, version_id=cheaper, dataset_id=dataset, split="holdout", evaluators=EVALS,
                       gateway=fake_gateway(FakeProvider(responder=lambda m, p: "positive")))
    comparison = compare_runs(engine, a.id, b.id)
    assert comparison.verdicts["label"].baseline_mean == 1.0
    assert comparison.verdicts["label"].verdict != "non-inferior"
    diffs = differences_frame(engine, a.id, b.id)
    assert len(diffs) == 5 and set(diffs["output_baseline"]) == {"negative"}
    assert set(diffs["output_candidate"]) == {"positive"} and "score.label_candidate" in diffs.columns
    table = run_frame(engine, b.id)
    assert len(table) == 20 and {"output", "score.label", "cost", "latency_s", "cached"} <= set(table.columns)
    assert run_summary(engine, a.id)["items"] == 20
    with pytest.raises(NotFound):
        run_summary(engine, 999)
