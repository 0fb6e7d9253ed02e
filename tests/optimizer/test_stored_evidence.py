"""A suggestion's evidence as the optimizer writes it: a typed record, stored as JSON, that loads
the rows written before it was typed (the dict record.py built key by key) without loss."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import JSON, column, select, table, update

from trimloop.core.db import session_scope
from trimloop.core.evidence import Evidence, SavingsProjection, Verdict
from trimloop.core.tables import Prompt, PromptVersion, Suggestion
from trimloop.core.templates import Template
from trimloop.evals.feedback import feedback_summary
from trimloop.evals.runner import EvalItem, ItemResult
from trimloop.evals.stats import non_inferiority
from trimloop.optimizer.evidence import changes, differing_items
from trimloop.optimizer.savings import project
from trimloop.optimizer.spec import VersionSpec

RAW = table("suggestion", column("id"), column("evidence", JSON))  # the column as plain JSON: no validation
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def evidence_as_written_before_typing() -> dict[str, Any]:
    """The dict record.py wrote before the evidence was typed, key by key, from the same parts."""
    before = VersionSpec(Template(kind="text", text="Classify the review as positive or negative: {{text}}"),
                         "local/gemma3-270m", {"temperature": 0})
    after = VersionSpec(Template(kind="text", text="Sentiment of {{text}}:"), "local/smollm2-135m",
                        {"temperature": 0, "max_tokens": 4})
    items = [EvalItem(id=i, inputs={"text": f"review {i}"}, expected="positive") for i in range(30)]
    base = {i.id: ItemResult(i.id, 0, "positive", {"label": 1.0}, cost=2e-6, latency_s=0.2) for i in items}
    cand = {i.id: [ItemResult(i.id, 0, "negative" if i.id == 3 else "positive", {"label": 0.0 if i.id == 3 else 1.0},
                              cost=1e-6, latency_s=0.1)] for i in items}
    test = non_inferiority({k: [v.scores["label"]] for k, v in base.items()},
                           {k: [r.scores["label"] for r in v] for k, v in cand.items()}, margin=0.05, alpha=0.05)
    savings = project(call_times=[NOW - timedelta(hours=h) for h in range(48)], logged_costs=[2e-6] * 48,
                      baseline_latencies=[0.2] * 48, paired_costs=[(2e-6, 1e-6)] * 30,
                      candidate_latencies=[0.1] * 30, optimization_spend=0.01, now=NOW)
    return {
        "changes": changes(before, after),
        "lineage": [{"move": "retarget", "detail": "local/smollm2-135m"}, {"move": "shorten", "detail": "−58 % chars"}],
        "evaluators": {"label": test.to_dict()},
        "verdict": "non-inferior on every evaluator at margin 0.05 (n=30)",
        "n": 30,
        "n_wanted": 120,
        "prompt_tokens": [14.0, 6.0],
        "differing_items": differing_items(items, base, cand),
        "savings": {k: getattr(savings, k) for k in SavingsProjection.model_fields},  # dataclasses.asdict then
        "search": {"search_calls": 412, "candidates": 7, "budget_exhausted": False, "notes": []},
        "price_sources": {"local/gemma3-270m": "settings (notional)", "local/smollm2-135m": "settings (notional)"},
        "evaluator_config": ["label"],
        "baseline_feedback": feedback_summary([[{"name": "thumbs", "value": True, "source": "user"}],
                                               [{"name": "topic", "value": "billing"}], None]),
    }


def _without_nulls(value: Any) -> Any:
    """What the typed column stores: a record's None fields are left out (they load as None)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _suggestion_row(session, evidence: Any) -> int:
    prompt = Prompt(name="sentiment", connector="files")
    session.add(prompt)
    session.flush()
    version = PromptVersion(prompt_id=prompt.id, sha="a" * 64, template={"kind": "text", "text": "x"},
                            model="local/gemma3-270m", connector="files")
    session.add(version)
    session.flush()
    row = Suggestion(prompt_id=prompt.id, baseline_version_id=version.id, candidate_version_id=version.id,
                     candidate_sha="b" * 64, evidence=evidence)
    session.add(row)
    session.flush()
    return row.id  # type: ignore[return-value]


def test_an_evidence_row_written_before_typing_loads_as_the_record_without_loss(engine):
    old = json.loads(json.dumps(evidence_as_written_before_typing()))
    with session_scope(engine) as session:
        sid = _suggestion_row(session, {})
        session.execute(update(RAW).where(RAW.c.id == sid).values(evidence=old))  # as an old row: raw JSON
    with session_scope(engine) as session:
        evidence = session.get(Suggestion, sid).evidence
    assert isinstance(evidence, Evidence) and evidence.unreadable == {}
    label = evidence.evaluators["label"]
    assert isinstance(label, Verdict) and label.n == 30 and label.verdict == old["evaluators"]["label"]["verdict"]
    assert label.lower == pytest.approx(old["evaluators"]["label"]["lower"]) and label.margin == 0.05
    assert evidence.changes.model == ["local/gemma3-270m", "local/smollm2-135m"]
    assert evidence.changes.params == {"max_tokens": [None, 4]}
    assert [step.move for step in evidence.lineage] == ["retarget", "shorten"]
    assert evidence.savings is not None and evidence.savings.monthly == pytest.approx(old["savings"]["monthly"])
    assert evidence.differing_items[0].item_id == 3 and evidence.differing_items[0].candidate_output == "negative"
    assert evidence.baseline_feedback["thumbs"].mean == 1.0 and evidence.baseline_feedback["topic"].values == {"billing": 1}
    assert evidence.model_dump(mode="json", exclude_none=True, exclude={"unreadable"}) == _without_nulls(old)


def test_evidence_is_stored_as_the_same_json_and_validated_when_set(engine):
    old = json.loads(json.dumps(evidence_as_written_before_typing()))
    with session_scope(engine) as session:
        sid = _suggestion_row(session, old)  # a dict is validated into the record at once
        assert isinstance(session.get(Suggestion, sid).evidence, Evidence)
    with session_scope(engine) as session:
        stored = session.execute(select(RAW.c.evidence).where(RAW.c.id == sid)).scalar_one()
    assert stored == _without_nulls(old)
    with pytest.raises(ValidationError, match="evaluators"):
        Suggestion(prompt_id=1, baseline_version_id=1, candidate_version_id=1, candidate_sha="c",
                   evidence={"evaluators": {"label": {"n": "many"}}})


def test_a_field_that_no_longer_validates_is_set_aside_not_the_row(engine):
    with session_scope(engine) as session:
        sid = _suggestion_row(session, {})
        session.execute(update(RAW).where(RAW.c.id == sid).values(evidence={
            "holdout_n": 60, "evaluators": {"exact": {"lower": -0.01, "verdict": "pass"}},
            "savings": {"calls_per_day": 120.0, "monthly": 42.0}}))
    with session_scope(engine) as session:
        evidence = session.get(Suggestion, sid).evidence
    assert evidence.evaluators["exact"].ok and evidence.evaluators["exact"].n is None  # older verdict words pass
    assert evidence.savings is None and evidence.unreadable == {"savings": {"calls_per_day": 120.0, "monthly": 42.0}}
    assert evidence.model_extra == {"holdout_n": 60}  # a key this version does not know is kept


def test_a_stored_value_that_is_not_a_record_loads_as_an_empty_one_kept_aside():
    assert Evidence.load(["not", "a", "record"]).unreadable == {"stored": ["not", "a", "record"]}
    assert Evidence.load(None).evaluators == {}
