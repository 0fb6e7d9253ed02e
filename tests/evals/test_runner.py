"""The runner: pure API, stored runs, resumability (calls counted by the fake provider), samples."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.errors import SpendCapReached
from trimloop.core.ledger import Ledger
from trimloop.core.providers import Retryable
from trimloop.core.tables import EvalResult, EvalRun
from trimloop.evals.datasets import build_from_logs
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.gold import ColumnMapping, import_file
from trimloop.evals.runner import EvalItem, evaluate_items, run_eval, samples_for, stored_results
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


async def test_stored_run_records_everything_and_a_rerun_pays_nothing(engine) -> None:
    version, dataset = _setup(engine)
    provider = FakeProvider(responder=sentiment, latency_s=0.01)
    gateway = fake_gateway(provider)
    run = await run_eval(engine, version_id=version, dataset_id=dataset, split="holdout",
                         evaluators=LABEL, gateway=gateway, concurrency=4)
    assert run.status == "done" and len(provider.calls) == 20
    summary = run.summary
    assert summary["items"] == 20 and summary["scores"] == {"label": 1.0, "matches_baseline": 1.0}
    assert summary["cost"] == pytest.approx(sum(c["input_tokens"] + c["output_tokens"] for c in provider.calls) / 1e6)
    assert summary["latency_p50_s"] >= 0.01 and summary["errors"] == 0
    results = stored_results(engine, run.id)
    assert len(results) == 20 and all(r.output in (" positive", " negative") for r in results)

    again = await run_eval(engine, version_id=version, dataset_id=dataset, split="holdout",
                           evaluators=LABEL, gateway=gateway)
    assert again.id == run.id and len(provider.calls) == 20  # nothing new was called
    with session_scope(engine) as session:
        assert len(session.exec(select(EvalRun)).all()) == 1


async def test_an_interrupted_run_resumes_where_it_stopped(engine) -> None:
    version, dataset = _setup(engine)
    cap = Ledger(max_calls=7)
    with pytest.raises(SpendCapReached):
        await run_eval(engine, version_id=version, dataset_id=dataset, split="search",
                       evaluators=LABEL, gateway=fake_gateway(FakeProvider(responder=sentiment)), ledger=cap,
                       concurrency=1)
    with session_scope(engine) as session:
        run = session.exec(select(EvalRun)).one()
        stored = session.exec(select(EvalResult)).all()
    assert run.status == "interrupted" and len(stored) == 7
    second = FakeProvider(responder=sentiment)  # a fresh process
    done = await run_eval(engine, version_id=version, dataset_id=dataset, split="search",
                          evaluators=LABEL, gateway=fake_gateway(second))
    assert done.id == run.id and done.status == "done"
    assert len(second.calls) == 20 - 7 and done.summary["items"] == 20


async def test_failed_items_are_recorded_then_retried_on_rerun(engine) -> None:
    version, dataset = _setup(engine, n=10)
    state = {"down": True}

    def flaky(model, prompt):
        if state["down"]:
            raise Retryable("503 server error: provider down")
        return sentiment(model, prompt)

    provider = FakeProvider(responder=flaky)
    gateway = fake_gateway(provider, max_retries=1, backoff_base_s=0.001)
    run = await run_eval(engine, version_id=version, dataset_id=dataset, split="search",
                         evaluators=LABEL, gateway=gateway)
    assert run.summary["errors"] == 5 and run.summary["scores"]["label"] == 0.0
    assert all("gave up after 2 attempts; last error: 503 server error: provider down" in r.error
               for r in stored_results(engine, run.id))
    state["down"] = False
    rerun = await run_eval(engine, version_id=version, dataset_id=dataset, split="search",
                           evaluators=LABEL, gateway=gateway)
    assert rerun.id == run.id and rerun.summary["errors"] == 0 and len(provider.calls) == 5
    assert rerun.summary["scores"]["label"] == 1.0


async def test_temperature_above_zero_samples_each_item_with_seeds(engine) -> None:
    version, dataset = _setup(engine, n=8, params={"temperature": 0.7, "max_tokens": 5})
    provider = FakeProvider(responder=sentiment)
    run = await run_eval(engine, version_id=version, dataset_id=dataset, split="search",
                         evaluators=LABEL, gateway=fake_gateway(provider))
    assert run.samples == 3 and len(provider.calls) == 4 * 3
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
    run = await run_eval(engine, version_id=version, dataset_id=dataset, split="search",
                         evaluators=build_evaluators({"label": ["positive", "negative"]}),
                         gateway=fake_gateway(FakeProvider(responder=sentiment)))
    metrics = run.summary["label_metrics"]["label"]
    predicted = ["negative" if "bad" in r["text"] else "positive" for r in rows]
    expected_acc = sum(p == r["label"] for p, r in zip(predicted, rows)) / 12
    assert metrics["n"] == 12 and metrics["accuracy"] == pytest.approx(expected_acc)
    assert metrics["accuracy"] == pytest.approx(run.summary["scores"]["label"])
    assert set(metrics["per_label"]) == {"positive", "negative"}
