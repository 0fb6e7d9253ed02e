"""The scheduler and a broken prompt with `scheduler.repair` on: a pass queues a repair run on the
scheduler's repair budget (not a cost search), which suggests a repair; the next pass does not
search again while it waits for review, nor once it was rejected in the same broken spell."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.evals.health_seed import OPTIONS, seed_triage
from tests.optimizer.conftest import gateway_for  # noqa: F401  (fixture)
from tests.optimizer.test_repair import follows_the_format
from trimloop.api.scheduler import Worker
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, Suggestion, utcnow
from trimloop.testing.fake_provider import FakeProvider, fake_model


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", models={"fake/big": fake_model(50, 100), "fake/small": fake_model(5, 10)},
                    prompts={"triage": OPTIONS | {"rungs": [8, 24], "dataset_size": 200, "holdout_fraction": 0.6,
                                                  "models": ["fake/small"], "budget_calls": 5000}},
                    scheduler={"repair": True, "repair_budget_calls": 900, "repair_budget_dollars": 5.0})


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


async def test_a_broken_prompt_gets_a_repair_run_on_the_repair_budget_once(engine, settings, gateway_for):  # noqa: F811
    prompt_id = seed_triage(engine, quality="broken")
    provider = FakeProvider(responder=follows_the_format)
    clock = Clock()
    worker = Worker(engine=engine, settings=settings, gateway=gateway_for(provider), clock=clock, name="w1")
    first = await worker.run_pass(do_sync=False)
    assert first.health == {prompt_id: "broken"}
    [decision] = first.decisions
    assert decision.due and decision.code == "repair" and decision.reason.startswith("broken, so due for a repair")
    [run] = first.executed
    assert run.status == "succeeded" and run.config == {"repair": True}, run.error
    assert run.budget_calls == 900 and run.budget_dollars == 5.0  # the repair budget, not the prompt's 5000 calls
    assert run.calls_made <= 900 and run.results.suggestion_id is not None
    with session_scope(engine) as session:
        suggestion = session.get(Suggestion, run.results.suggestion_id)
        assert suggestion.kind == "repair"
        # rejected: the prompt stays broken, and the same spell is not searched again
        store.reject_suggestion(session=session, suggestion_id=suggestion.id, reviewer="ana", reason="not now")
    calls = provider.attempts
    clock.now += timedelta(days=1)
    second = await worker.run_pass(do_sync=False)
    [again] = second.decisions
    assert not again.due and again.code == "broken" and f"repair run {run.id} already searched" in again.reason
    assert second.executed == [] and provider.attempts == calls
    clock.now += timedelta(days=8)  # still broken a week later: one more repair run
    third = await worker.run_pass(do_sync=False)
    assert third.decisions[0].code == "repair" and "still broken" in third.decisions[0].reason
    with session_scope(engine) as session:
        assert len(session.exec(__import__("sqlmodel").select(OptimizationRun)).all()) == 2


async def test_without_scheduler_repair_a_broken_prompt_is_skipped(engine, settings, gateway_for):  # noqa: F811
    off = settings.model_copy(update={"scheduler": settings.scheduler.model_copy(update={"repair": False})})
    seed_triage(engine, quality="broken")
    provider = FakeProvider(responder=follows_the_format)
    report = await Worker(engine=engine, settings=off, gateway=gateway_for(provider), name="w1").run_pass(do_sync=False)
    [decision] = report.decisions
    assert not decision.due and decision.code == "broken" and "--repair" in decision.reason
    assert report.executed == [] and provider.attempts == 0
