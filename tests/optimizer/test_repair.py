"""Repair runs (optimizer.repair) on a broken support-triage prompt, through the real gateway with
a fake provider: a fixed answer format answers right → a certified `repair` suggestion; a stronger
(dearer) model answers right → a repair whose cost rises; nothing helps → "no repair found" with
the best candidate's evidence."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.settings import Settings
from trimloop.core.tables import EvalRun, RunEvent, Suggestion
from trimloop.evals.report import compare_runs
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_provider import FakeProvider, fake_model

from tests.evals.health_seed import LABELS, OPTIONS, seed_triage
from tests.optimizer.conftest import gateway_for  # noqa: F401  (fixture)

APOLOGY = "I am sorry, I cannot help with that ticket."


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home",
                    models={"fake/big": fake_model(50, 100), "fake/small": fake_model(5, 10),
                            "fake/strong": fake_model(150, 300)},
                    prompts={"triage": OPTIONS | {"rungs": [8, 24], "dataset_size": 200, "holdout_fraction": 0.6,
                                                  "models": ["fake/small"]}})


def text_of(prompt) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(m["content"] for m in prompt) if isinstance(prompt, list) else prompt


def right(prompt) -> str:  # type: ignore[no-untyped-def]
    return re.findall(r"about (\w+)", text_of(prompt))[-1]


def follows_the_format(model: str, prompt) -> str:  # type: ignore[no-untyped-def]
    """Any model answers right once the prompt lists the allowed answers; else it apologises."""
    return right(prompt) if "Answer with exactly one of: billing, bug, other." in text_of(prompt) else APOLOGY


async def repair(engine, settings, provider, gateway_for, **config):  # type: ignore[no-untyped-def]  # noqa: F811
    prompt_id = seed_triage(engine, quality="broken")
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config={"repair": True} | config,
                            budget_calls=1500).id
    return await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway_for(provider))


async def test_a_fixed_answer_format_is_a_certified_repair(engine, settings, gateway_for):  # noqa: F811
    provider = FakeProvider(responder=follows_the_format)
    run = await repair(engine, settings, provider, gateway_for)
    assert run.status == "succeeded", run.error
    results = run.results
    assert results.baseline_health.verdict == "broken" and results.suggestion_id is not None, results.no_suggestion
    assert results.repair.certified and results.repair.min_effect == 0.05
    assert results.suggestion_cut.startswith("repair: label +")
    with session_scope(engine) as session:
        s = session.get(Suggestion, results.suggestion_id)
        assert s.kind == "repair" and s.status == "pending"
        evidence = s.evidence
        assert evidence.kind == "repair" and evidence.lineage[-1].move == "answer_format"
        verdict = evidence.evaluators["label"]
        assert verdict.test == "superiority" and verdict.verdict == "superior" and verdict.min_effect == 0.05
        assert verdict.margin == -0.05 and verdict.lower > 0.05 and verdict.ok
        gain = evidence.repair.gains["label"]
        assert gain.before < 0.1 and gain.after == 1.0 and gain.lower > 0.5 and gain.n == verdict.n
        assert evidence.repair.alpha == verdict.alpha  # the level its bounds are at (α / certify_top)
        before, after = evidence.repair.cost_per_call
        assert before > 0 and after > 0 and evidence.repair.cost_change == pytest.approx(after / before - 1)
        assert evidence.repair.baseline_health == "broken" and evidence.repair.health_reasons
        # the stored holdout runs re-derive the same superiority test (one code path)
        again = compare_runs(session, evidence.baseline_eval_run_id, evidence.candidate_eval_run_id)
        assert again.verdicts["label"].lower == pytest.approx(verdict.lower) and again.passed
        assert again.verdicts["label"].test == "superiority"
        stored = session.get(EvalRun, evidence.candidate_eval_run_id).summary["certification"]
        assert stored["test"] == "superiority" and stored["margin"] == -0.05
        kinds = [e.kind for e in session.exec(select(RunEvent).where(RunEvent.run_id == run.id)).all()]
    assert "repair.started" in kinds and "suggestion.created" in kinds
    # the candidate states the allowed answers and stops at the line's end
    answered = [c for c in provider.calls if "Answer with exactly one of" in text_of(c["prompt"])]
    assert answered and all("\n" in c["params"]["stop"] for c in answered)
    assert all(label in text_of(answered[0]["prompt"]) for label in LABELS)


async def test_a_stronger_dearer_model_is_a_repair_whose_cost_rises(engine, settings, gateway_for):  # noqa: F811
    def strong_only(model: str, prompt) -> str:  # type: ignore[no-untyped-def]
        return right(prompt) if model == "fake/strong" else APOLOGY

    provider = FakeProvider(responder=strong_only)
    run = await repair(engine, settings, provider, gateway_for, models=["fake/small", "fake/strong"])
    assert run.status == "succeeded", run.error
    assert run.results.suggestion_id is not None, run.results.no_suggestion
    with session_scope(engine) as session:
        s = session.get(Suggestion, run.results.suggestion_id)
        assert s.kind == "repair" and s.evidence.changes.model == ["fake/big", "fake/strong"]
        assert s.evidence.repair.cost_change > 0.5  # thrice the price, shorter answers: the fix costs more
        assert s.evidence.repair.monthly_cost_change > 0 and s.projected_monthly_savings < 0
        assert s.payback_days is None
    assert "cost per call +" in run.results.suggestion_cut


async def test_when_nothing_helps_the_run_says_no_repair_found_with_evidence(engine, settings, gateway_for):  # noqa: F811
    provider = FakeProvider(responder=lambda model, prompt: APOLOGY)
    run = await repair(engine, settings, provider, gateway_for)
    assert run.status == "succeeded", run.error
    results = run.results
    assert results.suggestion_id is None and not results.repair.certified
    assert results.no_suggestion.startswith("no repair found: no candidate of ")
    assert "better than the baseline by 0.05 on every evaluator" in results.no_suggestion
    assert results.repair.best is not None and results.repair.best_evidence["label"].n >= 2
    assert "the best candidate (" in results.no_suggestion and "lower bound" in results.no_suggestion
    assert results.repair.tried and results.search_calls > 0
    with session_scope(engine) as session:
        assert session.exec(select(Suggestion)).all() == []


async def test_a_repair_needs_gold_answers(engine, settings, gateway_for):  # noqa: F811
    own = settings.model_copy(update={"prompts": {"triage": {"evaluators": ["matches_baseline"], "repair": True}}})
    prompt_id = seed_triage(engine, quality="good")
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id).id
    provider = FakeProvider(responder=follows_the_format)
    run = await execute_run(engine=engine, settings=own, run_id=run_id, gateway=gateway_for(provider))
    assert run.status == "failed" and "needs gold answers" in run.error and "expected_from" in run.error
    assert provider.attempts == 0
