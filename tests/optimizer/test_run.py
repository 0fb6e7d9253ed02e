"""A whole optimization run on a real store, through the real gateway with a fake provider."""

from __future__ import annotations

import pytest
from sqlmodel import select

from trimloop.core.catalog import resolve_model
from trimloop.core.db import session_scope
from trimloop.core.llm_cache import cache_key
from trimloop.core.providers import Retryable
from trimloop.core.settings import GatewaySettings
from trimloop.core.status import CandidateStatus
from trimloop.core.tables import Candidate, OptimizationRun, RunEvent, Suggestion
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_provider import FakeProvider
from trimloop.testing.sentiment import VERBOSE, classify, prompt_text, review


async def _run(engine, settings, prompt_id, gateway, **config):
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config=config).id
    return await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway)


async def test_a_run_certifies_a_cheaper_version_and_suggests_it(engine, settings, seeded, good_gateway,
                                                                 good_provider):
    run = await _run(engine, settings, seeded, good_gateway)
    assert run.status == "succeeded", run.error
    assert run.results.suggestion_id is not None, (run.results.no_suggestion, run.results.certifications)
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
        kinds = [e.kind for e in session.exec(select(RunEvent).where(RunEvent.run_id == run.id))]
        candidates = session.exec(select(Candidate).where(Candidate.run_id == run.id)).all()
    assert suggestion.status == "pending" and suggestion.candidate_cost_per_call < suggestion.baseline_cost_per_call
    evidence = suggestion.evidence
    for stats in evidence.evaluators.values():
        assert stats.verdict == "non-inferior" and stats.lower > -0.05
    assert evidence.savings.calls_per_day > 5 and suggestion.projected_monthly_savings > 0
    assert evidence.changes.template_diff and evidence.lineage
    assert run.results.suggestion_id == suggestion.id and run.calls_made == len(good_provider.calls)
    assert {"run.started", "dataset.ready", "candidate.proposed", "certify.finished", "suggestion.created"} <= set(kinds)
    assert any(c.status == "certified" for c in candidates)
    certified = next(c for c in candidates if c.status == CandidateStatus.certified)
    assert certified.scores.certification.passed and certified.scores.sha == suggestion.candidate_sha
    assert certified.scores.mean_score() is not None and certified.scores.lineage


async def test_negative_control_makes_no_suggestion_and_says_why(engine, settings, seeded, gateway_for):
    hopeless = gateway_for(FakeProvider(responder=lambda model, prompt: "I cannot help with that."))
    run = await _run(engine, settings, seeded, hopeless, models=["local/smollm2-135m"])
    assert run.status == "succeeded"
    assert run.results.no_suggestion.startswith("no suggestion, because")
    with session_scope(engine) as session:
        assert session.exec(select(Suggestion)).all() == []
        statuses = {c.status for c in session.exec(select(Candidate))}
    assert "certified" not in statuses


async def test_budget_caps_the_calls(engine, settings, seeded, good_gateway, good_provider):
    run = await _run(engine, settings, seeded, good_gateway, budget_calls=30)
    assert run.status == "succeeded" and run.calls_made <= 30 and len(good_provider.calls) <= 30


async def test_rerun_repays_nothing_and_rejected_candidates_are_not_reproposed(engine, settings, seeded, good_gateway,
                                                                               good_provider, gateway_for):
    first = await _run(engine, settings, seeded, good_gateway)
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
        suggestion.status = "rejected"
        rejected_sha = suggestion.candidate_sha
    fresh = FakeProvider(responder=lambda model, prompt: classify(prompt_text(prompt)))
    second = await _run(engine, settings, seeded, gateway_for(fresh))  # another process, the same database
    assert second.status == "succeeded"
    with session_scope(engine) as session:
        shas = [s.candidate_sha for s in session.exec(select(Suggestion).where(Suggestion.run_id == second.id))]
    assert rejected_sha not in shas
    # the second run re-evaluates what the first did from the cache: only new calls are paid
    assert second.results.cache_hits > 0 and second.calls_made == len(fresh.calls) < first.calls_made
    assert not {_key(c) for c in fresh.calls} & {_key(c) for c in good_provider.calls}
    assert second.spent_dollars == pytest.approx(_priced(settings, fresh.calls))


async def test_a_dollar_budget_caps_the_spend_at_the_catalog_price_of_what_was_answered(engine, settings, seeded,
                                                                                         good_gateway, good_provider):
    cap = 1.5e-5  # about a third of what this run spends uncapped (4.4e-5 on 280 calls)
    run = await _run(engine, settings, seeded, good_gateway, budget_dollars=cap)
    assert run.status == "succeeded", run.error
    assert 0 < run.spent_dollars <= cap and run.calls_made == len(good_provider.calls) < 280
    assert run.spent_dollars == pytest.approx(_priced(settings, good_provider.calls))
    assert run.results.budget_exhausted and "dollar cap reached" in run.results.no_suggestion, run.results


async def test_a_run_through_429s_5xx_and_malformed_replies_completes_and_pays_each_answer_once(
        engine, settings, seeded, gateway_for):
    faults = [Retryable("429 rate limited", retry_after=0.01), Retryable("503 server error: busy"),
              Retryable("malformed response body (KeyError): {}")]
    seen = []

    def sometimes_failing(model, prompt):
        seen.append(model)
        if len(seen) % 5 == 0:  # one attempt in five fails, each kind in turn
            raise faults[len(seen) // 5 % 3]
        return classify(prompt_text(prompt))

    provider = FakeProvider(responder=sometimes_failing)
    quick = settings.model_copy(update={"gateway": GatewaySettings(backoff_base_s=0.001, backoff_max_s=0.05)})
    run = await _run(engine, settings, seeded, gateway_for(provider, settings=quick))
    assert run.status == "succeeded" and run.results.suggestion_id is not None, (run.error, run.results.no_suggestion)
    assert provider.attempts > len(provider.calls) == run.calls_made  # retried attempts are not billed
    assert len({_key(c) for c in provider.calls}) == len(provider.calls)
    assert run.spent_dollars == pytest.approx(_priced(settings, provider.calls))


def _key(call) -> str:  # type: ignore[no-untyped-def]
    return cache_key(model=call["model"], prompt=call["prompt"], params=call["params"], seed=call["seed"])


def _priced(settings, calls) -> float:  # type: ignore[no-untyped-def]
    """What the calls cost at the catalog's price for each model."""
    return sum(resolve_model(settings, c["model"]).price(c["input_tokens"], c["output_tokens"]) for c in calls)


async def test_bad_options_fail_the_run_with_a_clear_reason(engine, settings, seeded, good_gateway):
    run = await _run(engine, settings, seeded, good_gateway, margin=-1)
    assert run.status == "failed" and "margin" in run.error


async def test_cancelled_run_stops(engine, settings, seeded, gateway_for):
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=seeded).id
    calls = {"n": 0}

    def cancel_midway(model, prompt):
        calls["n"] += 1
        if calls["n"] == 5:
            with session_scope(engine) as session:
                session.get(OptimizationRun, run_id).status = "cancelled"
        return " positive"

    run = await execute_run(engine=engine, settings=settings, run_id=run_id,
                            gateway=gateway_for(FakeProvider(responder=cancel_midway)))
    assert run.status == "cancelled" and calls["n"] < 60


async def test_a_run_reclaimed_by_another_worker_is_left_to_it(engine, settings, seeded, gateway_for):
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=seeded).id
    calls = {"n": 0}

    def taken_over_midway(model, prompt):
        calls["n"] += 1
        if calls["n"] == 5:
            with session_scope(engine) as session:
                session.get(OptimizationRun, run_id).worker = "worker-b"
        return " positive"

    run = await execute_run(engine=engine, settings=settings, run_id=run_id,
                            gateway=gateway_for(FakeProvider(responder=taken_over_midway)), worker="worker-a")
    assert run.status == "running" and run.worker == "worker-b" and run.finished_at is None


async def test_items_without_a_gold_answer_are_left_out_not_fatal(engine, settings, seeded, good_gateway):
    from trimloop.core.tables import LogRecord

    with session_scope(engine) as session:
        for log in session.exec(select(LogRecord)):
            if log.id % 3:  # two thirds of the calls were labelled by a reviewer
                log.feedback = [{"name": "expected", "value": log.output.strip(), "source": "reviewer"}]
    run = await _run(engine, settings, seeded, good_gateway, expected_from="expected")
    assert run.status == "succeeded", run.error
    with session_scope(engine) as session:
        ready = session.exec(select(RunEvent).where(RunEvent.kind == "dataset.ready")).one()
    assert ready.data["left_out_without_gold"] > 0 and ready.data["evaluators"] == ["label"]


async def test_the_search_keeps_to_its_share_of_the_budget(engine, settings, seeded, good_gateway):
    run = await _run(engine, settings, seeded, good_gateway, search_budget_calls=40)
    assert run.status == "succeeded", run.error
    assert run.results.search_calls <= 40 and run.results.budget_exhausted


async def test_a_run_on_an_imported_gold_set_runs_the_baseline_once_and_scores_against_gold(
        engine, settings, seeded, good_gateway, good_provider, tmp_path):
    import json
    import random

    from trimloop.core.tables import Dataset
    from trimloop.evals.gold import ColumnMapping, import_file

    rng = random.Random(11)
    rows = [review(rng, 1000 + i) for i in range(300)]
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows), encoding="utf-8")
    with session_scope(engine) as session:
        dataset_id = import_file(session, prompt_id=seeded, path=gold, holdout_fraction=0.7,
                                 mapping=ColumnMapping.same_names("text", expected="label")).dataset.id
    run = await _run(engine, settings, seeded, good_gateway, dataset=dataset_id)
    assert run.status == "succeeded", run.error
    results = run.results
    assert results.dataset_id == dataset_id and results.suggestion_id is not None, results.no_suggestion
    # The gold set has no baseline outputs: the baseline answered each item once, through the gateway.
    head = VERBOSE.split("{{text}}")[0]
    baseline_calls = [c for c in good_provider.calls if c["model"] == "local/gemma3-270m" and c["prompt"].startswith(head)]
    assert results.baseline_calls == 300 and len(baseline_calls) == 300
    assert run.calls_made == results.baseline_calls + results.search_calls + results.certify_calls
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
        assert session.get(Dataset, dataset_id).source == "import"
    assert 0 < suggestion.evidence.evaluators["label"].n <= 210  # from the gold set's holdout

    # A dataset that is not this prompt's blocks the run, before any call, with a clear reason.
    missing = await _run(engine, settings, seeded, good_gateway, dataset=dataset_id + 99)
    assert missing.status == "blocked" and f"no dataset {dataset_id + 99}" in missing.error
    assert missing.calls_made == 0 and missing.results.problems()[0].code == "dataset_unknown"
