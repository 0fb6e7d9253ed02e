"""Prompt health from production logs: the verdicts (broken, degraded, healthy, unknown) with the
numbers behind them, the anytime-valid sequence they are decided on, and the stored verdict that
changes once per change."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import Session

from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings
from trimloop.core.tables import LogRecord, utcnow
from trimloop.evals.anytime import confidence_sequence, wilson
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.health import baseline_check, health_config, parse_health, prompt_health, record_health

from tests.evals.health_seed import LABELS, OPTIONS, seed_triage


def settings_with(tmp_path, **health) -> Settings:  # type: ignore[no-untyped-def]
    options = dict(OPTIONS) | ({"health": health} if health else {})
    return Settings(home=tmp_path / "home", prompts={"triage": options})


def test_the_confidence_sequence_holds_at_every_look():
    """Checked after every batch of 10 up to 500 values, it misses the true mean in at most α of
    the streams; a fixed-n Wilson interval read the same way misses far more often."""
    rng = np.random.default_rng(11)
    streams, alpha, p = 200, 0.05, 0.3
    missed = wilson_missed = 0
    for _ in range(streams):
        x = (rng.random(500) < p).astype(float)
        looks = range(10, 501, 10)
        missed += any(not (b.low <= p <= b.high) for b in (confidence_sequence(x[:n], alpha=alpha) for n in looks))
        wilson_missed += any(not (w.low <= p <= w.high) for w in (wilson(int(x[:n].sum()), n) for n in looks))
    assert missed / streams <= alpha
    assert wilson_missed / streams > 2 * alpha  # why the verdicts do not use it
    one = confidence_sequence([1.0, 0.0] * 50, alpha=alpha, side="upper")
    assert one.low == 0.0 and 0.5 < one.high < 0.8
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confidence_sequence([1.5])


def test_a_broken_prompt_is_broken_with_the_numbers(engine, tmp_path):
    prompt_id = seed_triage(engine, quality="broken")
    with Session(engine) as session:
        report = prompt_health(session, settings_with(tmp_path), prompt_id=prompt_id)
    assert report.verdict == "broken" and report.calls == 300
    [check] = report.label_checks
    assert check.broken and check.n == 300 and check.majority_label == "billing"
    assert check.accuracy < 0.05 and 0.35 < check.majority_rate < 0.48 and 0.65 < check.no_label_share < 0.8
    reason = report.reasons[0]
    assert reason.startswith("label: agrees with reviewer labels on ") and "of 300 items" in reason
    assert "always answering the most common label (billing) would score 4" in reason
    assert "of answers name no label" in reason
    signals = {s.key: s for s in report.signals}
    assert signals["format:no_label"].status == "broken" and signals["evaluator:label"].n == 300
    assert signals["evaluator:label"].status == "broken"
    assert signals["feedback:thumbs"].value == 0.0  # the reviewers' label is gold, not a feedback signal
    assert "feedback:label" not in signals
    assert {"errors", "cost_per_call", "latency_p50_s", "latency_p95_s", "format:empty"} <= set(signals)
    assert signals["latency_p95_s"].low <= signals["latency_p95_s"].value <= signals["latency_p95_s"].high
    assert len(signals["evaluator:label"].days) >= 12 and sum(d.n for d in signals["evaluator:label"].days) == 300


def test_a_good_prompt_is_healthy(engine, tmp_path):
    prompt_id = seed_triage(engine, quality="good")
    with Session(engine) as session:
        report = prompt_health(session, settings_with(tmp_path), prompt_id=prompt_id)
    assert report.verdict == "healthy" and report.reasons == [], report.reasons
    signals = {s.key: s for s in report.signals}
    label = signals["evaluator:label"]
    assert 0.85 < label.value < 0.97 and label.low < label.value < label.high and label.cs_low <= label.low
    assert all(s.status in ("ok", "info") for s in report.signals)


def test_a_drop_over_the_recent_days_is_degraded(engine, tmp_path):
    now = utcnow()
    prompt_id = seed_triage(engine, quality="good", n=600, now=now,
                            drift={"after": now - timedelta(days=3), "quality": "meh"})
    with Session(engine) as session:
        report = prompt_health(session, settings_with(tmp_path), prompt_id=prompt_id, now=now)
    assert report.verdict == "degraded", report.reasons
    label = next(s for s in report.signals if s.key == "evaluator:label")
    assert label.status == "degraded" and label.baseline > 0.85 and label.recent < 0.72
    assert any(r.startswith("evaluator:label: ") and "over the last 3 days" in r for r in report.reasons)


def test_a_signal_under_its_floor_is_degraded_and_under_broken_below_is_broken(engine, tmp_path):
    prompt_id = seed_triage(engine, quality="meh")
    with Session(engine) as session:
        floored = prompt_health(session, settings_with(tmp_path, floors={"label": 0.8}), prompt_id=prompt_id)
        assert floored.verdict == "degraded" and "below its floor 80 %" in floored.reasons[0]
        harsh = prompt_health(session, settings_with(tmp_path, broken_below={"evaluator:label": 0.75}),
                              prompt_id=prompt_id)
        assert harsh.verdict == "broken" and "broken_below" in harsh.reasons[0]


def test_no_calls_or_no_quality_signal_is_unknown(engine, tmp_path):
    prompt_id = seed_triage(engine, quality="good", days=12)
    with Session(engine) as session:
        later = prompt_health(session, settings_with(tmp_path), prompt_id=prompt_id, now=utcnow() + timedelta(days=30))
        assert later.verdict == "unknown" and later.calls == 0 and "no calls" in later.reasons[0]
        bare = Settings(home=tmp_path / "home")  # no gold answers, free-text evaluator defaults
        for log in session.exec(__import__("sqlmodel").select(LogRecord)).all():
            log.output, log.feedback = f"a long free-text answer number {log.id}", []
            session.add(log)
        session.commit()
        report = prompt_health(session, bare, prompt_id=prompt_id)
    assert report.verdict == "unknown" and "no quality signal" in report.reasons[0]


def test_provider_errors_count(engine, tmp_path):
    prompt_id = seed_triage(engine, quality="good")
    with Session(engine) as session:
        logs = session.exec(__import__("sqlmodel").select(LogRecord)).all()
        for log in logs[::3]:
            log.output, log.meta = None, {"error": "429 rate limited"}
            session.add(log)
        session.commit()
        report = prompt_health(session, settings_with(tmp_path, floors={"errors": 0.05}), prompt_id=prompt_id)
    errors = next(s for s in report.signals if s.key == "errors")
    assert errors.n == 300 and errors.value == pytest.approx(100 / 300)
    assert report.verdict == "degraded" and any(r.startswith("errors:") and "above its floor" in r
                                                for r in report.reasons)


def test_the_stored_verdict_changes_once_per_change(engine, tmp_path):
    prompt_id = seed_triage(engine, quality="broken")
    settings = settings_with(tmp_path)
    with Session(engine) as session:
        first = prompt_health(session, settings, prompt_id=prompt_id)
        assert record_health(session, first) == "unknown"  # never checked before: a change from unknown
        assert record_health(session, first) is None  # the same verdict again: no change
        session.commit()
        healthy = first.model_copy(update={"verdict": "healthy", "reasons": []})
        assert record_health(session, healthy) == "broken"
        assert record_health(session, healthy) is None
        session.commit()


def test_bad_health_options_name_the_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        health_config(settings_with(tmp_path, window_days=1), "triage")
    assert caught.value.where == "[prompts.triage.health].window_days"
    with pytest.raises(ConfigError, match="recent_days"):
        parse_health({"window_days": 7, "recent_days": 7}, where="health")
    with pytest.raises(ConfigError) as caught:
        parse_health({"floors": {"label": 80}}, where="health")
    assert caught.value.where == "health.floors.label" and "[0, 1]" in caught.value.message
    with pytest.raises(ConfigError, match="known options"):
        parse_health({"windowdays": 7}, where="health")


def test_the_baseline_check_of_a_run_uses_the_same_rules():
    evaluators = build_evaluators({"label": {"labels": LABELS}})
    gold = ["billing"] * 41 + ["bug"] * 35 + ["other"] * 24
    broken = ["no idea"] * 73 + ["bug"] * 27
    report = baseline_check(list(zip(broken, gold)), evaluators, parse_health(None, where="health"), dataset_id=4,
                            gold_from="feedback 'label'")
    assert report.verdict == "broken" and report.source == "dataset 4"
    assert report.reasons[0] == ("label: agrees with reviewer labels on 3 % of 100 items; always answering the most "
                                 "common label (billing) would score 41 %; 73 % of answers name no label")
    fine = baseline_check(list(zip(gold, gold)), evaluators, parse_health(None, where="health"))
    assert fine.verdict == "healthy"


def _watch(rng, days: int, per_day: int, p_before: float, p_recent: float, looks: range) -> bool:  # type: ignore[no-untyped-def]
    """One simulated prompt's thumbs feedback, checked after each of `looks` days as the scheduler
    would (the last 3 days against the days before); True when any check called it degraded."""
    from trimloop.core.evidence import HealthReport
    from trimloop.evals.health import Call, assess

    start = utcnow() - timedelta(days=days)
    config = parse_health({"min_drop": 0.0}, where="health")
    calls = []
    for d in range(days):
        for k in range(per_day):
            at = start + timedelta(days=d, minutes=k)
            p = p_recent if d >= days - 3 else p_before
            calls.append(Call(at=at, output="ok", feedback=[{"name": "thumbs", "value": bool(rng.random() < p)}]))
    for day in looks:
        now = start + timedelta(days=day)
        seen = [c for c in calls if c.at < now]
        report = assess(seen, [], config, report=HealthReport(window_days=14), split=now - timedelta(days=3))
        if report.verdict == "degraded":
            return True
    return False


def test_checking_a_steady_prompt_after_every_sync_rarely_calls_it_degraded():
    """No change: 100 prompts, thumbs up 80 % of the time, each checked after every day from day 7
    to day 14 (8 looks): at most α are ever called degraded, though nothing changed. With a
    30-point drop over the last 3 days (120 calls), most are: anytime-valid bounds are wide, so
    at 40 calls a day smaller drops take more days (or traffic) to show."""
    import random

    rng = random.Random(5)
    alarms = sum(_watch(rng, 14, 40, 0.8, 0.8, range(7, 15)) for _ in range(100))
    assert alarms / 100 <= 0.05
    caught = sum(_watch(rng, 14, 40, 0.8, 0.5, range(14, 15)) for _ in range(20))
    assert caught >= 15


def test_json_answers_that_do_not_parse_are_format_failures():
    from trimloop.core.evidence import HealthReport
    from trimloop.evals.health import Call, assess

    now = utcnow()
    good = '{"name": "Lena", "city": "Quito"}'
    calls = [Call(at=now - timedelta(hours=i), output=good if i % 5 == 0 else "Sorry, here is the order: Lena, Quito",
                  expected=good) for i in range(60)][::-1]
    config = parse_health(None, where="health")
    fields = assess(calls, build_evaluators(["json_fields"]), config, report=HealthReport(), split=None)
    assert fields.verdict == "broken" and fields.reasons[0].startswith("format:json: 80 % of 60 answers with no JSON")
    schema = {"json_schema": {"schema": {"type": "object", "required": ["name", "city"]}}}
    checked = assess(calls, build_evaluators(schema), config, report=HealthReport(), split=None)
    assert checked.verdict == "broken" and checked.reasons[0].startswith("format:json_schema: 80 % of 60")


def test_an_evaluator_that_crashes_is_left_out_with_a_note():
    from dataclasses import dataclass

    from trimloop.core.evidence import HealthReport
    from trimloop.evals.evaluators import Evaluator, NamedEvaluator
    from trimloop.evals.health import Call, assess

    @dataclass
    class Buggy(Evaluator):
        name = "buggy"

        def evaluate(self, ctx):  # type: ignore[no-untyped-def]
            raise KeyError("oops")

    now = utcnow()
    calls = [Call(at=now - timedelta(minutes=i), output="billing", expected="billing") for i in range(20)]
    evaluators = [NamedEvaluator("buggy", Buggy()), *build_evaluators({"label": {"labels": LABELS}})]
    report = assess(calls, evaluators, parse_health(None, where="health"), report=HealthReport(), split=None)
    assert report.verdict == "healthy" and "evaluator:buggy" not in {s.key for s in report.signals}
    assert report.notes == ["buggy: failed with KeyError on 20 answers, which were left out (a bug in the evaluator)"]
