"""A run whose baseline is broken does not search: it ends `baseline_unhealthy` with the numbers,
having made no call (the baseline's answers are its logs); a forced run searches anyway."""

from __future__ import annotations

import re

import pytest

from trimloop.core.db import session_scope
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, RunEvent
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_provider import FakeProvider, fake_model

from tests.evals.health_seed import OPTIONS, seed_triage
from tests.optimizer.conftest import gateway_for  # noqa: F401  (fixture)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", models={"fake/big": fake_model(50, 100), "fake/small": fake_model(5, 10)},
                    prompts={"triage": OPTIONS | {"rungs": [8, 24], "dataset_size": 200, "holdout_fraction": 0.6,
                                                  "models": ["fake/small"], "margin": 0.05}})


def answers_right(model: str, prompt) -> str:  # type: ignore[no-untyped-def]
    ticket = prompt[-1]["content"] if isinstance(prompt, list) else prompt
    return re.findall(r"about (\w+)", ticket)[-1]


async def test_a_broken_baseline_ends_the_run_without_searching(engine, settings, gateway_for):  # noqa: F811
    prompt_id = seed_triage(engine, quality="broken")
    provider = FakeProvider(responder=answers_right)
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id).id
    run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway_for(provider))
    assert run.status == "baseline_unhealthy" and run.error is None, run.error
    assert provider.attempts == 0 and run.calls_made == 0 and run.spent_dollars == 0
    results = run.results
    assert results.search_calls == 0 and results.suggestion_id is None
    assert results.baseline_health.verdict == "broken" and results.baseline_health.source.startswith("dataset ")
    message = results.no_suggestion
    assert message.startswith("the baseline is broken, so the run did not search")
    assert re.search(r"agrees with reviewer labels on \d+(\.\d)? % of 200 items; always answering the most common "
                     r"label \(\w+\) would score \d+ %; \d+ % of answers name no label", message), message
    assert "--force" in message
    with session_scope(engine) as session:
        kinds = [e.kind for e in session.exec(__import__("sqlmodel").select(RunEvent).where(
            RunEvent.run_id == run_id)).all()]
    assert "run.baseline_unhealthy" in kinds and "candidate.proposed" not in kinds and kinds[-1] == "run.baseline_unhealthy"


async def test_a_forced_run_searches_a_broken_baseline(engine, settings, gateway_for):  # noqa: F811
    prompt_id = seed_triage(engine, quality="broken")
    provider = FakeProvider(responder=answers_right)
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config={"force": True}, budget_calls=300).id
    run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway_for(provider))
    assert run.status == "succeeded", run.error
    assert run.results.search_calls > 0 and provider.attempts > 0
    assert run.results.baseline_health.verdict == "broken"
    with session_scope(engine) as session:
        assert session.get(OptimizationRun, run_id).status == "succeeded"


async def test_a_healthy_baseline_is_searched_as_before(engine, settings, gateway_for):  # noqa: F811
    prompt_id = seed_triage(engine, quality="good")
    provider = FakeProvider(responder=answers_right)
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, budget_calls=300).id
    run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway_for(provider))
    assert run.status == "succeeded", run.error
    assert run.results.baseline_health.verdict == "healthy" and run.results.search_calls > 0


def test_a_broken_prompt_is_never_due():
    from datetime import timedelta

    from trimloop.core.tables import utcnow
    from trimloop.optimizer.due import DueCode, DuePolicy, PromptFacts, decide

    now = utcnow()
    facts = PromptFacts(prompt_id=1, name="triage", has_production=True, logs=500, health="broken",
                        health_reason="label: agrees with reviewer labels on 2 % of 180 items")
    decision = decide(facts, DuePolicy(), now=now)
    assert not decision.due and "broken" in decision.reason and "2 % of 180 items" in decision.reason
    assert "--force" in decision.reason and decision.code == DueCode.broken
    old = PromptFacts(prompt_id=1, name="triage", has_production=True, logs=500, health="degraded",
                      last_run=(3, now - timedelta(days=30)))
    assert decide(old, DuePolicy(), now=now).due  # degraded is watched, not skipped
