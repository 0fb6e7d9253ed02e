"""Issue 21's latency must-show on the bundled models: a run whose objective is latency ends in a
certified latency suggestion, its latency measured on fresh calls — the baseline re-run as the
control arm, interleaved with the candidate's calls on the same holdout items — with an interval.

Gemma 3 270M answers a few-shot sentiment prompt with max_tokens 16 and no stop sequence, so it
writes its label and then keeps going; `trim_output` caps max_tokens near the label, which cuts the
time of every call. Run at `concurrency = 1`: llama.cpp's server has one slot, so concurrent calls
queue behind each other and the queue, not the call, sets the measured latency (a cut hides in it).
The logs are really produced on SST-2 sentences, with the gold label as feedback.

Sized to prove the point on 2 cores in under 3 minutes: 60 holdout items, the fewest with which a
candidate that never disagrees with the control is shown within margin 0.05 at α 0.05 with room
to spare (Tango's bound: −0.049 at 53 items, −0.043 at 60). `certify_top = 1`: the race ranks by
speed measured against the control × the chance of holding quality, so the cap leads; testing
more arms would split α between them (Bonferroni) and need more items. The numbers — and the
items where the candidate's label differs from the control's — are printed for the issue's note
(run with -s). Measured 2026-12-06: p50 0.724 s → 0.161 s (ratio 0.218, upper bound 0.227,
n 60), accuracy 0.900 → 0.900 (lower bound −0.043), 175 calls, 152 s."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.identity import version_identity
from trimloop.core.store import move_label
from trimloop.core.tables import EvalResult, EvalRun, LogRecord, Prompt, PromptVersion, Suggestion, utcnow
from trimloop.core.templates import Template, render
from trimloop.optimizer.run import create_run, execute_run

# the bundled models run once, on SQLite; the fake-gateway twin runs on PostgreSQL too
pytestmark = [pytest.mark.integration, pytest.mark.sqlite_only]

SST2 = next((p / "shared" / "datasets" / "sst2" / "test.jsonl" for p in Path(__file__).resolve().parents
             if (p / "shared" / "datasets" / "sst2" / "test.jsonl").exists()),
            Path("shared") / "datasets" / "sst2" / "test.jsonl")
EXAMPLES = [("a gorgeous , witty , seductive movie .", "positive"),
            ("the movie is a disaster from start to finish .", "negative"),
            ("an utterly charming and hilarious film .", "positive"),
            ("it 's a bore , plain and simple .", "negative")]
PROMPT = ("Classify the sentiment of each movie review sentence as positive or negative.\n\n"
          + "".join(f"Review: {t}\nSentiment: {s}\n\n" for t, s in EXAMPLES) + "Review: {{text}}\nSentiment:")
PARAMS = {"temperature": 0, "max_tokens": 16}
MODEL = "local/gemma3-270m"
N = 75  # logs, and the dataset: 15 search items, 60 holdout items
MARGIN = 0.05


async def produce(settings: Any, rows: list[dict[str, Any]]) -> list[Any]:
    gateway = Gateway(settings, cache=False)
    try:
        return [await gateway.call(MODEL, text=render(Template.plain(PROMPT), {"text": r["text"]}),  # type: ignore[arg-type]
                                   params=PARAMS) for r in rows]
    finally:
        await gateway.aclose()


def disagreements(session: Any, run_id: int) -> dict[str, list[dict[str, Any]]]:
    """Per certified candidate: the holdout items where its label score differs from the control's
    beside it, with both outputs (for the note, and to tell a quality loss from provider noise)."""
    runs = session.exec(select(EvalRun).where(EvalRun.run_id == run_id)).all()
    out = {}
    for run in (r for r in runs if r.summary.get("role") == "candidate"):
        control = next((r for r in runs if r.summary.get("role") == "control" and r.summary.get("sha") == run.summary.get("sha")), None)
        if control is None:
            continue
        rows = {role: {r.item_id: r for r in session.exec(select(EvalResult).where(EvalResult.eval_run_id == e.id))}
                for role, e in (("control", control), ("candidate", run))}
        out[run.summary.get("label", "?")] = [
            {"item": i, "control": rows["control"][i].output, "candidate": c.output, "scores": [
                rows["control"][i].scores.get("label"), c.scores.get("label")], "error": c.error}
            for i, c in rows["candidate"].items() if i in rows["control"]
            and rows["control"][i].scores.get("label") != c.scores.get("label")]
    return out


async def test_a_latency_suggestion_is_certified_on_interleaved_fresh_control_calls(engine, local_models) -> None:
    if not SST2.exists():
        pytest.skip(f"shared datasets not found at {SST2}")
    started = time.monotonic()
    rows = random.Random(21).sample([json.loads(line) for line in SST2.read_text().splitlines()], N)
    results = await produce(local_models, rows)
    now = utcnow()
    template = {"kind": "text", "text": PROMPT}
    with session_scope(engine) as session:
        prompt = Prompt(name="sst2-latency", connector="files")
        session.add(prompt)
        session.flush()
        version = PromptVersion(prompt_id=prompt.id, sha=version_identity(template=template, model=MODEL, params=PARAMS),
                                template=template, model=MODEL, params=PARAMS, connector="files", external_version="1")
        session.add(version)
        session.flush()
        move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
        for i, (row, result) in enumerate(zip(rows, results)):
            session.add(LogRecord(connector="files", external_id=f"log-{i}", prompt_id=prompt.id, version_id=version.id,
                                  inputs={"text": row["text"]}, output=result.output, model=MODEL,
                                  input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                                  cost=result.cost, latency_s=result.latency_s,
                                  called_at=now - timedelta(days=27) + timedelta(hours=12 * i),
                                  feedback=[{"name": "expected", "value": row["label"], "source": "gold"}]))
        prompt_id = prompt.id
    assert sum(r.output_tokens for r in results) / len(results) > 8, "Gemma should write past its label"
    config = {"models": [MODEL], "objective": "latency", "latency": "p50", "concurrency": 1,
              "expected_from": "expected", "margin": MARGIN, "dataset_size": N, "holdout_fraction": 0.8,
              "rungs": [5, 15], "max_candidates": 4, "certify_top": 1,
              "evaluators": {"label": {"labels": ["positive", "negative"], "mode": "first"}}}
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config=config).id
    gateway = Gateway(local_models, engine=engine)
    try:
        run = await execute_run(engine=engine, settings=local_models, run_id=run_id, gateway=gateway)
    finally:
        await gateway.aclose()
    assert run.status == "succeeded", (run.error, [f.message for f in run.results.problems()])
    with session_scope(engine) as session:
        print(json.dumps({"disagreements": disagreements(session, run_id)}, indent=2))
        suggestion = session.exec(select(Suggestion).where(Suggestion.run_id == run_id)).first()
        assert suggestion is not None, json.dumps(run.results.model_dump(mode="json"), indent=2)
        evidence = suggestion.evidence
        control = {r.item_id: r.latency_s for r in session.exec(
            select(EvalResult).where(EvalResult.eval_run_id == evidence.control.eval_run_id))}
        fresh = {r.item_id: r.latency_s for r in session.exec(
            select(EvalResult).where(EvalResult.eval_run_id == evidence.candidate_eval_run_id))}
    claim, verdict = evidence.latency, evidence.evaluators["label"]
    note = {"objective": claim.objective, "line": claim.line, "p50_s": [claim.before_s, claim.after_s],
            "ratio": claim.ratio, "ratio_upper": claim.ratio_upper, "n": claim.n,
            "lineage": [f"{s.move}: {s.detail}" for s in evidence.lineage],
            "accuracy": [verdict.baseline_mean, verdict.candidate_mean], "accuracy_lower": verdict.lower,
            "quality_n": verdict.n, "calls": run.calls_made, "control_calls": evidence.control.calls,
            "cut": run.results.suggestion_cut, "seconds": round(time.monotonic() - started)}
    print(json.dumps(note, indent=2))
    # the claim is a latency claim, tested on the paired fresh calls, with an interval
    assert claim.objective == "latency p50" and claim.passed and claim.stat == "p50"
    assert claim.ratio < claim.ratio_upper < 1 - claim.min_effect
    assert claim.n == evidence.control.items == len(set(control) & set(fresh)) >= 55
    # the baseline's side is the control's fresh calls on those items, not the logged latencies
    assert claim.before_s == pytest.approx(statistics.median(control.values()), rel=0.25)
    assert claim.after_s == pytest.approx(statistics.median(fresh.values()), rel=0.25)
    # and quality held at the run's margin, judged against the control arm too
    assert verdict.ok and verdict.lower > -MARGIN and verdict.n == claim.n
    assert run.results.suggestion_cut.startswith("p50 ")
