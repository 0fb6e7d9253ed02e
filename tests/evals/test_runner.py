"""The runner: pure API (calls counted by the fake provider), trials, stored runs, samples."""

from __future__ import annotations

import json

import pytest

from trimloop.core.db import session_scope
from trimloop.core.tables import EvalRun
from trimloop.evals.datasets import build_from_logs, dataset_items
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.gold import ColumnMapping, import_file
from trimloop.evals.runner import (
    EvalItem, ItemResult, Trials, evaluate_items, samples_for, store_eval_run, stored_results, summarize,
)
from trimloop.testing.fake_provider import FakeProvider

from tests.evals.helpers import TEMPLATE, add_logs, add_prompt, add_version, fake_gateway

LABEL = build_evaluators({"label": {"labels": ["positive", "negative"], "against": "baseline"},
                          "matches_baseline": {}})


def sentiment(model, prompt):
    """A fake model: 'positive' unless the review says 'bad'."""
    return " negative" if "bad" in prompt else " positive"


def _setup(engine, n=40, params=None):
    prompt = add_prompt(engine)
    version = add_version(engine, prompt, params=params)
    add_logs(engine, prompt, version, [(f"{'bad' if i % 3 == 0 else 'fine'} film {i}",
                                        "negative" if i % 3 == 0 else "positive") for i in range(n)])
    with session_scope(engine) as session:
        dataset = build_from_logs(session, prompt_id=prompt, holdout_fraction=0.5, seed=0)
    return version, dataset.id


async def test_pure_api_scores_items_without_a_database() -> None:
    items = [EvalItem(1, {"text": "bad"}, expected="negative"),
             EvalItem(2, {"text": "nice"}, expected="negative"),
             EvalItem(3, {"wrong_var": "x"}, expected="positive")]
    gateway = fake_gateway(FakeProvider(responder=sentiment, latency_s=0.01))
    results = await evaluate_items(template=TEMPLATE, model="m", params={"temperature": 0},
                                   items=items, evaluators=build_evaluators({"label": ["positive", "negative"]}),
                                   gateway=gateway)
    assert [r.scores["label"] for r in results] == [1.0, 0.0, 0.0]
    assert results[0].reasons == {"label": {"label": "negative"}}
    assert results[2].error and "missing variable" in results[2].error and results[2].output is None
    first = results[0]  # priced by the catalog at $1 per 1M tokens; the latency is the provider's, measured
    assert first.input_tokens > 0 and first.cost == pytest.approx((first.input_tokens + first.output_tokens) / 1e6)
    assert first.latency_s >= 0.01


async def test_stored_run_keeps_every_result_and_reads_back_the_same(engine) -> None:
    version, dataset = _setup(engine)
    with session_scope(engine) as session:
        items = [EvalItem(r.id, r.inputs, r.expected, r.baseline_output) for r in dataset_items(session, dataset, "holdout")]
    provider = FakeProvider(responder=sentiment, latency_s=0.01)
    results = await evaluate_items(template=TEMPLATE, model="fake/model", params={"temperature": 0}, items=items,
                                   evaluators=LABEL, gateway=fake_gateway(provider), concurrency=4)
    with session_scope(engine) as session:
        run = store_eval_run(session, version_id=version, dataset_id=dataset, split="holdout", results=results,
                             evaluators=LABEL, summary={"role": "baseline"})
        run_id, summary = run.id, run.summary
    assert len(provider.calls) == 20 and summary["role"] == "baseline"
    assert summary["items"] == 20 and summary["scores"] == {"label": 1.0, "matches_baseline": 1.0}
    assert summary["cost"] == pytest.approx(sum(c["input_tokens"] + c["output_tokens"] for c in provider.calls) / 1e6)
    assert summary["latency_p50_s"] >= 0.01 and summary["errors"] == 0
    with session_scope(engine) as session:
        assert session.get(EvalRun, run_id).status == "done"
        stored = stored_results(session, run_id)
    assert sorted(stored) == sorted(r.item_id for r in results)
    assert sorted(stored.flat(), key=lambda r: r.item_id) == sorted(results, key=lambda r: r.item_id)


def test_trials_group_samples_by_item() -> None:
    trials = Trials.of([ItemResult("a", 1, "x", {"k": 0.0}, cost=3.0, latency_s=2.0),
                        ItemResult("a", 0, "y", {"k": 1.0}, cost=1.0, latency_s=1.0),
                        ItemResult("b", 0, None, {"k": 0.0}, error="503")])
    assert trials.calls == 3 and len(trials) == 2 and trials.scores("k") == {"a": [0.0, 1.0], "b": [0.0]}
    assert trials.mean_score("k") == 0.25  # item means 0.5 and 0, then their mean
    assert trials.cost_per_call == 2.0 and trials.latency_p50 == 1.5  # failed calls left out


async def test_temperature_above_zero_samples_each_item_with_seeds() -> None:
    provider = FakeProvider(responder=sentiment)
    items = [EvalItem(i, {"text": f"fine film {i}"}, baseline_output=" positive") for i in range(4)]
    results = await evaluate_items(template=TEMPLATE, model="m", params={"temperature": 0.7, "max_tokens": 5},
                                   items=items, evaluators=LABEL, gateway=fake_gateway(provider))
    assert len(results) == len(provider.calls) == 4 * 3
    assert sorted({c["seed"] for c in provider.calls}) == [0, 1, 2]
    assert samples_for({"temperature": 0}, None) == 1 and samples_for({}, 5) == 5
    with pytest.raises(ValueError):
        samples_for({}, 0)


async def test_label_metrics_in_the_summary(engine, tmp_path) -> None:
    prompt = add_prompt(engine)
    version = add_version(engine, prompt)
    path = tmp_path / "gold.jsonl"
    rows = [{"text": f"{'bad' if i % 2 else 'fine'} film {i}", "label": "negative" if i % 3 == 0 else "positive"}
            for i in range(12)]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with session_scope(engine) as session:
        dataset = import_file(session, prompt_id=prompt, path=path, holdout_fraction=0,
                              mapping=ColumnMapping({"text": "text"}, expected="label")).dataset.id
    evaluators = build_evaluators({"label": ["positive", "negative"]})
    with session_scope(engine) as session:
        items = dataset_items(session, dataset, "search")
    results = await evaluate_items(template=TEMPLATE, model="m", params={"temperature": 0}, evaluators=evaluators,
                                   items=[EvalItem(i.id, i.inputs, i.expected) for i in items],
                                   gateway=fake_gateway(FakeProvider(responder=sentiment)))
    summary = summarize(results, evaluators, {i.id: i.expected for i in items})
    metrics = summary["label_metrics"]["label"]
    predicted = ["negative" if "bad" in r["text"] else "positive" for r in rows]
    expected_acc = sum(p == r["label"] for p, r in zip(predicted, rows)) / 12
    assert metrics["n"] == 12 and metrics["accuracy"] == pytest.approx(expected_acc)
    assert metrics["accuracy"] == pytest.approx(summary["scores"]["label"])
    assert set(metrics["per_label"]) == {"positive", "negative"}
