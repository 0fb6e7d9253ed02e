"""Due logic with a controllable clock, on a real SQLite store (the seeded `sentiment` prompt)."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.settings import ModelConfig, Settings
from trimloop.core.store import move_label
from trimloop.core.tables import LogRecord, OptimizationRun, Prompt, PromptVersion, Suggestion, utcnow
from trimloop.optimizer.due import (
    DuePolicy,
    PromptFacts,
    candidate_prices,
    decide,
    due_prompts,
    record_candidates,
)

POLICY = DuePolicy(min_new_logs=50, max_days_between_runs=7)


def _decision(engine, settings, now):
    with session_scope(engine) as session:
        (decision,) = [d for d in due_prompts(session, settings, now=now, policy=POLICY) if d.prompt_name == "sentiment"]
    return decision


def _finished_run(engine, settings, prompt_id, at, status="succeeded"):
    with session_scope(engine) as session:
        run = OptimizationRun(prompt_id=prompt_id, status=status, created_at=at, finished_at=at)
        session.add(run)
        session.flush()
        record_candidates(session, run_id=run.id, prices=candidate_prices(settings, "sentiment"))
        return run.id


def _add_logs(engine, prompt_id, n, at):
    with session_scope(engine) as session:
        for i in range(n):
            session.add(LogRecord(connector="files", external_id=f"new-{at.timestamp()}-{i}", prompt_id=prompt_id,
                                  inputs={"text": "fine"}, output=" positive", called_at=at))


def test_a_never_optimized_prompt_with_logs_is_due(engine, settings, seeded):
    decision = _decision(engine, settings, utcnow())
    assert decision.due and decision.reason == "never optimized (200 logs)"


def test_after_a_run_it_is_due_again_on_new_traffic_or_age(engine, settings, seeded):
    t0 = utcnow()
    run_id = _finished_run(engine, settings, seeded, t0)
    quiet = _decision(engine, settings, t0 + timedelta(days=1))
    assert not quiet.due and quiet.reason.startswith(f"up to date: 0 new logs since run {run_id}")
    _add_logs(engine, seeded, 49, t0 + timedelta(hours=2))
    assert not _decision(engine, settings, t0 + timedelta(days=1)).due
    _add_logs(engine, seeded, 1, t0 + timedelta(hours=3))
    busy = _decision(engine, settings, t0 + timedelta(days=1))
    assert busy.due and busy.reason == f"50 new logs since run {run_id} (threshold 50)"
    _finished_run(engine, settings, seeded, t0 + timedelta(days=1))
    old = _decision(engine, settings, t0 + timedelta(days=8, minutes=1))
    assert old.due and old.reason.startswith("no run for 7.0 days")


def test_a_new_candidate_model_or_price_makes_it_due(engine, settings, seeded):
    t0 = utcnow()
    _finished_run(engine, settings, seeded, t0)
    later = t0 + timedelta(days=1)
    assert not _decision(engine, settings, later).due
    cheap = ModelConfig(api_base="http://127.0.0.1:9/v1", input_per_mtok=0.001, output_per_mtok=0.002)
    added = settings.model_copy(update={"models": {"acme/cheap": cheap}})
    decision = _decision(engine, added, later)
    assert decision.due and decision.reason.endswith("new acme/cheap")
    _finished_run(engine, added, seeded, later)
    repriced = added.model_copy(update={"models": {"acme/cheap": cheap.model_copy(update={"input_per_mtok": 0.0005})}})
    decision = _decision(engine, repriced, later + timedelta(hours=1))
    assert decision.due and decision.reason.endswith("new price for acme/cheap")


def test_never_due_while_a_suggestion_is_pending_or_a_run_is_active(engine, settings, seeded):
    with session_scope(engine) as session:
        version_id = session.exec(select(PromptVersion.id).where(PromptVersion.prompt_id == seeded)).first()
        suggestion = Suggestion(prompt_id=seeded, baseline_version_id=version_id, candidate_version_id=version_id,
                                candidate_sha="x" * 64)
        session.add(suggestion)
        session.flush()
        suggestion_id = suggestion.id
    decision = _decision(engine, settings, utcnow() + timedelta(days=30))
    assert not decision.due and decision.reason == f"suggestion {suggestion_id} is pending review"
    with session_scope(engine) as session:
        session.get(Suggestion, suggestion_id).status = "rejected"
        session.add(OptimizationRun(prompt_id=seeded, status="running"))
    decision = _decision(engine, settings, utcnow() + timedelta(days=30))
    assert not decision.due and decision.reason.endswith("is running")


def test_prompts_without_production_version_or_logs_are_not_due_and_say_why(engine, settings):
    with session_scope(engine) as session:
        bare = Prompt(name="bare", connector="files")
        quiet = Prompt(name="quiet", connector="files")
        session.add_all([bare, quiet])
        session.flush()
        version = PromptVersion(prompt_id=quiet.id, sha="q" * 64, template={"kind": "text", "text": "{{x}}"},
                                model="local/smollm2-135m", connector="files")
        session.add(version)
        session.flush()
        move_label(session=session, prompt_id=quiet.id, label="production", version_id=version.id)
    with session_scope(engine) as session:
        reasons = {d.prompt_name: (d.due, d.reason) for d in due_prompts(session, settings, now=utcnow())}
    assert reasons["bare"] == (False, "no version labelled production: label one in your prompt store, then sync")
    assert reasons["quiet"] == (False, "no logs for this prompt yet: sync a connector that has its calls")


def test_bad_prompt_options_are_not_due_and_name_the_key(engine, seeded, tmp_path):
    broken = Settings(home=tmp_path / "h", prompts={"sentiment": {"margni": 0.1}})
    decision = _decision(engine, broken, utcnow())
    assert not decision.due and "margni" in decision.reason and "[prompts.sentiment]" in decision.reason


def test_decide_is_pure_and_checks_in_order():
    now = utcnow()
    facts = PromptFacts(prompt_id=1, name="p", has_production=True, logs=10, last_run=(3, now - timedelta(days=2)),
                        new_logs=5, last_candidates={"m": [1, 2]}, candidates={"m": [1, 2]})
    assert not decide(facts, POLICY, now=now).due
    assert decide(facts, POLICY, now=now + timedelta(days=5)).due
    unknown = PromptFacts(**{**facts.__dict__, "last_candidates": None, "candidates": {"n": [0, 0]}})
    assert not decide(unknown, POLICY, now=now).due  # a run that recorded no candidates never triggers this rule
    both = PromptFacts(**{**facts.__dict__, "pending_suggestion": 4, "active_run": (9, "queued")})
    assert decide(both, POLICY, now=now + timedelta(days=30)).reason == "run 9 is queued"
