"""Model retirements with the clock at 2026-12-01: litellm's map says gpt-5-mini retires on
2026-12-11 and gpt-4o-mini on 2027-01-14, both within the 60-day warning. A production prompt on
gpt-5-mini is due first with `model_retiring`; its run (the real gateway, a fake provider) never
tries a retiring model and its suggestion carries the deadline; without a certified replacement
the run still says who must act by when."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlmodel import select

from trimloop.api.scheduler import Worker
from trimloop.core.catalog import resolve_model
from trimloop.core.db import session_scope
from trimloop.core.identity import version_identity
from trimloop.core.retirement import retirement_of, split_retiring
from trimloop.core.settings import ModelConfig, Settings
from trimloop.core.store import move_label
from trimloop.core.tables import Candidate, LogRecord, OptimizationRun, Prompt, PromptVersion, Suggestion
from trimloop.optimizer.due import DueCode, DuePolicy, PromptFacts, decide, due_prompts
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_provider import FakeProvider, fake_model
from trimloop.testing.sentiment import VERBOSE, classify, prompt_text, review

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
DEADLINE = date(2026, 12, 11)
RUN = {"rungs": [8, 24], "dataset_size": 200, "margin": 0.05, "holdout_fraction": 0.6,
       "models": ["gpt-4o-mini", "acme/replacement"]}


@pytest.fixture
def settings(tmp_path) -> Settings:
    # acme/replacement costs more than gpt-5-mini ($0.25 / $2 per 1M): a migration may cost more
    return Settings(home=tmp_path / "home", models={"acme/replacement": fake_model(0.5, 4.0)},
                    prompts={"triage": RUN, "alpha": RUN})


def seed(engine, settings, name: str, model: str, n: int = 200) -> int:
    """A production text prompt on `model` with `n` logged calls over the 27 days before NOW."""
    rng = random.Random(7)
    template, params = {"kind": "text", "text": VERBOSE}, {"max_tokens": 3, "temperature": 0}
    priced = resolve_model(settings, model)
    with session_scope(engine) as session:
        prompt = Prompt(name=name, connector="files")
        session.add(prompt)
        session.flush()
        version = PromptVersion(prompt_id=prompt.id, sha=version_identity(template=template, model=model, params=params),
                                template=template, model=model, params=params, connector="files",
                                external_version="1")
        session.add(version)
        session.flush()
        move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
        for i in range(n):
            text, label = review(rng, i)
            session.add(LogRecord(connector="files", external_id=f"{name}-{i}", prompt_id=prompt.id,
                                  version_id=version.id, inputs={"text": text}, output=f" {label}", model=model,
                                  input_tokens=160, output_tokens=1, cost=priced.price(160, 1), latency_s=0.3,
                                  called_at=NOW - timedelta(days=27) + timedelta(hours=3 * i)))
        return prompt.id


def test_the_catalog_reads_retirement_dates_from_litellm_and_settings_override_them(settings):
    assert resolve_model(settings, "gpt-5-mini").retires_on == DEADLINE
    assert resolve_model(settings, "gpt-4o-mini").retires_on == date(2027, 1, 14)
    assert resolve_model(settings, "local/smollm2-135m").retires_on is None
    assert resolve_model(settings, "acme/replacement").retires_on is None
    moved = settings.model_copy(update={"models": {"gpt-5-mini": ModelConfig(retires_on=date(2027, 6, 30))}})
    found = retirement_of(moved, "gpt-5-mini")
    assert found.retires_on == date(2027, 6, 30) and found.source == "settings (retires_on)"
    keep, out = split_retiring(settings, ["gpt-4o-mini", "acme/replacement", "gpt-5-mini"], NOW.date())
    assert keep == ["acme/replacement"] and set(out) == {"gpt-4o-mini", "gpt-5-mini"}
    # 60 days is the default warning: gpt-4o-mini (44 days away) retires, 2027-06-30 does not yet
    assert split_retiring(moved, ["gpt-5-mini"], NOW.date()) == (["gpt-5-mini"], {})


def test_a_prompt_on_gpt_5_mini_is_due_with_model_retiring_first_in_line(engine, settings):
    seed(engine, settings, "alpha", "local/gemma3-270m")  # sorts first by name, and is due too
    retiring_id = seed(engine, settings, "triage", "gpt-5-mini")
    with session_scope(engine) as session:
        decisions = due_prompts(session, settings, now=NOW)
    assert [d.prompt_name for d in decisions] == ["triage", "alpha"] and all(d.due for d in decisions)
    first = decisions[0]
    assert first.code == DueCode.model_retiring and first.deadline == DEADLINE and first.urgent
    assert first.reason.startswith("model_retiring: gpt-5-mini retires on 2026-12-11 (in 10 days)")
    assert decisions[1].code == DueCode.never_optimized and decisions[1].deadline is None
    # the scheduler queues it first, and workers claim the oldest queued run first
    worker = Worker(engine=engine, settings=settings, gateway=None, clock=lambda: NOW)
    _, queued = worker._queue_due()
    with session_scope(engine) as session:
        first_run = session.get(OptimizationRun, queued[0])
    assert first_run.prompt_id == retiring_id and len(queued) == 2


def test_a_pending_suggestion_on_the_retiring_model_does_not_hold_up_its_migration(engine, settings):
    """Before, any pending suggestion kept a prompt whose model retires in 10 days from being due:
    a shorter prompt on gpt-5-mini, waiting for review, blocked the search for a replacement."""
    from tests.api.conftest import make_suggestion
    prompt_id = seed(engine, settings, "triage", "gpt-5-mini")
    make_suggestion(engine, prompt_id, savings=40.0)  # stays on gpt-5-mini

    def decision():
        with session_scope(engine) as session:
            return next(d for d in due_prompts(session, settings, now=NOW) if d.prompt_name == "triage")

    assert decision().due and decision().code == DueCode.model_retiring
    migration = make_suggestion(engine, prompt_id, savings=5.0, retires_on=DEADLINE)
    waiting = decision()
    assert not waiting.due and waiting.code == DueCode.pending_review and f"suggestion {migration} migrates" in waiting.reason


def test_model_retiring_is_due_once_per_warning_unless_the_ordinary_rules_say_so():
    policy = DuePolicy(min_new_logs=50, max_days_between_runs=7)
    leaving = retirement_of(Settings(), "gpt-5-mini")
    facts = PromptFacts(prompt_id=1, name="triage", has_production=True, logs=200, retirement=leaving,
                        last_run=(4, datetime(2026, 9, 1, tzinfo=timezone.utc)))
    before_warning = decide(facts, policy, now=NOW)
    assert before_warning.due and before_warning.code == DueCode.model_retiring
    assert "run 4 predates the warning" in before_warning.reason
    looked = PromptFacts(**{**facts.__dict__, "last_run": (5, NOW - timedelta(days=2))})
    quiet = decide(looked, policy, now=NOW)
    assert not quiet.due and quiet.deadline == DEADLINE and "already looked for a replacement" in quiet.reason
    busy = decide(PromptFacts(**{**looked.__dict__, "new_logs": 80}), policy, now=NOW)
    assert busy.due and busy.code == DueCode.model_retiring and "80 new logs since run 5" in busy.reason
    # 70 days before the date it is an ordinary prompt
    early = decide(facts, policy, now=datetime(2026, 10, 2, tzinfo=timezone.utc))
    assert early.code != DueCode.model_retiring and early.deadline is None
    # a pending migration waits for its review
    waiting = decide(PromptFacts(**{**facts.__dict__, "pending_suggestion": 9, "pending_migration": 9}),
                     policy, now=NOW)
    assert not waiting.due and waiting.code == DueCode.pending_review
    assert "suggestion 9 migrates it off gpt-5-mini: review it before 2026-12-11" in waiting.reason
    # one that keeps the retiring model (a shorter prompt on gpt-5-mini) does not hold up the replacement
    stays = decide(PromptFacts(**{**facts.__dict__, "pending_suggestion": 8}), policy, now=NOW)
    assert stays.due and stays.code == DueCode.model_retiring
    # far from the date, any pending suggestion waits for its review
    assert decide(PromptFacts(**{**facts.__dict__, "pending_suggestion": 8}), policy,
                  now=datetime(2026, 10, 2, tzinfo=timezone.utc)).code == DueCode.pending_review


async def _run(engine, settings, prompt_id, gateway):
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id).id
    return await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway, now=NOW)


async def test_its_run_never_proposes_a_retiring_model_and_the_suggestion_shows_the_deadline(
        engine, settings, gateway_for):
    prompt_id = seed(engine, settings, "triage", "gpt-5-mini")
    provider = FakeProvider(responder=lambda model, prompt: classify(prompt_text(prompt)))
    run = await _run(engine, settings, prompt_id, gateway_for(provider))
    assert run.status == "succeeded", run.error
    assert run.results.suggestion_id is not None, (run.results.no_suggestion, run.results.certifications)
    called = {c["model"] for c in provider.calls}
    assert called == {"acme/replacement"}  # never gpt-4o-mini, never the retiring baseline model
    with session_scope(engine) as session:
        models = {session.get(PromptVersion, c.version_id).model
                  for c in session.exec(select(Candidate).where(Candidate.run_id == run.id))}
        suggestion = session.get(Suggestion, run.results.suggestion_id)
    assert models == {"acme/replacement"}
    notes = " | ".join(run.results.notes)
    assert "migration: gpt-5-mini retires on 2026-12-11 (in 10 days)" in notes
    assert "left out retiring candidate models: gpt-4o-mini retires on 2027-01-14 (in 44 days)" in notes
    deadline = suggestion.evidence.deadline
    assert deadline.model == "gpt-5-mini" and deadline.retires_on == DEADLINE and deadline.days_left == 10
    assert deadline.source == "litellm price map (deprecation_date)"
    assert suggestion.retires_on == DEADLINE
    assert suggestion.evidence.changes.model == ["gpt-5-mini", "acme/replacement"]
    assert suggestion.projected_monthly_savings is not None
    migration = run.results.migration
    assert migration.certified and migration.message is None and migration.excluded_models == {
        "gpt-4o-mini": date(2027, 1, 14)}


async def test_without_a_certified_replacement_the_run_says_who_must_act_by_when(engine, settings, gateway_for):
    prompt_id = seed(engine, settings, "triage", "gpt-5-mini")
    hopeless = FakeProvider(responder=lambda model, prompt: "I cannot help with that.")
    run = await _run(engine, settings, prompt_id, gateway_for(hopeless))
    assert run.status == "succeeded", run.error
    assert run.results.suggestion_id is None
    migration = run.results.migration
    assert migration.message == "no certified replacement: needs a person before 2026-12-11"
    assert run.results.no_suggestion.startswith("no certified replacement: needs a person before 2026-12-11; ")
    assert migration.best is not None and migration.best_model == "acme/replacement"
    assert migration.best_evidence and all(not v.ok for v in migration.best_evidence.values())
    assert {c["model"] for c in hopeless.calls} == {"acme/replacement"}
    with session_scope(engine) as session:
        assert session.exec(select(Suggestion)).all() == []
