"""The one comparison: baseline vs candidate per evaluator, from results in memory or stored runs."""

from __future__ import annotations

import random

import pytest

from trimloop.core.db import session_scope
from trimloop.core.errors import NotFound, UserError
from trimloop.evals.datasets import build_from_logs, dataset_items
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.report import compare_results, compare_runs, paired
from trimloop.evals.runner import EvalItem, ItemResult, evaluate_items, store_eval_run
from trimloop.testing.fake_provider import FakeProvider

from tests.evals.helpers import TEMPLATE, add_logs, add_prompt, add_version, fake_gateway

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
    assert verdict.verdict == "non-inferior" and verdict.lower > -0.02
    assert (comparison.baseline_cost_per_call, comparison.candidate_cost_per_call) == (2.0, 0.5)
    assert comparison.to_dict()["passed"] is True


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


def test_the_numbers_do_not_depend_on_the_order_results_arrived_in() -> None:
    """Certification adds results as calls finish; the stored rows come back by item and sample.
    Both must give the same interval to the last bit, so items are paired in one fixed order."""
    rng = random.Random(5)
    base = [ItemResult(i, 0, "x", {"label": rng.random()}) for i in range(60)]
    cand = [ItemResult(i, s, "y", {"label": rng.random()}) for i in range(60) for s in range(3)]
    ordered = compare_results(base, cand, evaluators=["label"], margin=0.1).verdicts["label"]
    for _ in range(5):
        rng.shuffle(base)
        rng.shuffle(cand)
        assert compare_results(base, cand, evaluators=["label"], margin=0.1).verdicts["label"] == ordered
    assert ordered.method == "t" and ordered.n == 60 and ordered.samples == 180
    b, c = paired(base, cand, "label")
    assert list(b) == list(range(60)) and len(c[0]) == 3


def test_an_evaluator_on_fewer_than_two_items_has_no_verdict_and_fails() -> None:
    comparison = compare_results(_results([1.0]), _results([1.0]), evaluators=["label"])
    assert comparison.verdicts == {} and not comparison.passed


async def test_compare_runs_reads_stored_runs(engine) -> None:
    prompt = add_prompt(engine)
    baseline = add_version(engine, prompt)
    cheaper = add_version(engine, prompt, model="fake/cheap", labels=())
    add_logs(engine, prompt, baseline, [(f"film {i}", "negative" if i % 4 == 0 else "positive") for i in range(40)])
    with session_scope(engine) as session:
        dataset = build_from_logs(session, prompt_id=prompt, holdout_fraction=0.5)
        dataset_id = dataset.id
        items = [EvalItem(r.id, r.inputs, r.expected, r.baseline_output)
                 for r in dataset_items(session, dataset_id, "holdout")]
    # The baseline repeats its logged answers; the candidate says "positive" to everything.
    logged = {f"film {i}": "negative" if i % 4 == 0 else "positive" for i in range(40)}
    arms = {}
    for version, model, responder in ((baseline, "fake/model", lambda m, p: logged[p.split("Review: ")[1].split("\n")[0]]),
                                      (cheaper, "fake/cheap", lambda m, p: "positive")):
        results = await evaluate_items(template=TEMPLATE, model=model, params={"temperature": 0}, items=items,
                                       evaluators=EVALS, gateway=fake_gateway(FakeProvider(responder=responder)))
        with session_scope(engine) as session:
            arms[version] = (store_eval_run(session, version_id=version, dataset_id=dataset_id, split="holdout",
                                            results=results, evaluators=EVALS).id, results)
    with session_scope(engine) as session:
        stored = compare_runs(session, arms[baseline][0], arms[cheaper][0], margin=0.02)
    in_memory = compare_results(arms[baseline][1], arms[cheaper][1], evaluators=["label"], margin=0.02)
    assert stored == in_memory
    assert stored.verdicts["label"].baseline_mean == 1.0 and stored.verdicts["label"].verdict != "non-inferior"
    assert len(stored.differing_items) == 5 and stored.verdicts["label"].n == 20
    with session_scope(engine) as session, pytest.raises(NotFound, match="no eval run with id 999"):
        compare_runs(session, arms[baseline][0], 999)
