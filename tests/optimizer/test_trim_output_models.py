"""Issue 17's trim_output must-show on the bundled models: Gemma 3 270M answers an SST-2 few-shot
prompt with no stop sequence and max_tokens 32, so it writes its label and then keeps going
(another "Review: …" of its own). Its production logs are really produced on SST-2 sentences, with
the gold label as feedback; a run on Gemma alone (no cheaper model to retarget to) must end in a
certified trim_output suggestion with output tokens cut — or, honestly, in no suggestion with the
evidence of why. The numbers are printed for the issue's note (run with -s)."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.identity import version_identity
from trimloop.core.store import move_label
from trimloop.core.tables import LogRecord, Prompt, PromptVersion, Suggestion, utcnow
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
PARAMS = {"temperature": 0, "max_tokens": 32}
MODEL = "local/gemma3-270m"
N = 200


async def produce(settings: Any, rows: list[dict[str, Any]]) -> list[Any]:
    gateway = Gateway(settings, cache=False)
    limit = asyncio.Semaphore(2)

    async def one(row: dict[str, Any]) -> Any:
        async with limit:
            return await gateway.call(MODEL, text=render(Template.plain(PROMPT), {"text": row["text"]}),  # type: ignore[arg-type]
                                      params=PARAMS)
    try:
        return await asyncio.gather(*(one(r) for r in rows))
    finally:
        await gateway.aclose()


async def test_gemma_rambling_past_its_label_gets_trim_output_or_an_honest_no(engine, local_models) -> None:
    if not SST2.exists():
        pytest.skip(f"shared datasets not found at {SST2}")
    rows = [json.loads(line) for line in SST2.read_text().splitlines()]
    rows = random.Random(17).sample(rows, N)
    results = await produce(local_models, rows)
    now = utcnow()
    template = {"kind": "text", "text": PROMPT}
    with session_scope(engine) as session:
        prompt = Prompt(name="sst2-ramble", connector="files")
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
                                  called_at=now - timedelta(days=27) + timedelta(hours=3 * i),
                                  feedback=[{"name": "expected", "value": row["label"], "source": "gold"}]))
        prompt_id = prompt.id
    mean_out = sum(r.output_tokens for r in results) / len(results)
    assert mean_out > 16, "Gemma should write past its label without a stop sequence"
    config = {"models": [MODEL], "expected_from": "expected", "margin": 0.05, "dataset_size": N,
              "holdout_fraction": 0.6, "rungs": [8, 24], "max_candidates": 6, "certify_top": 2,
              "evaluators": {"label": {"labels": ["positive", "negative"], "mode": "first"}}}
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config=config).id
    gateway = Gateway(local_models, engine=engine)
    try:
        run = await execute_run(engine=engine, settings=local_models, run_id=run_id, gateway=gateway)
    finally:
        await gateway.aclose()
    assert run.status == "succeeded", run.error
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion).where(Suggestion.run_id == run_id)).first()
    note: dict[str, Any] = {"baseline_output_tokens": round(mean_out, 1), "calls": run.calls_made,
                            "certifications": [c.model_dump(mode="json") for c in run.results.certifications]}
    if suggestion is None:
        # the honest outcome: no suggestion, with the reasons (every certification tried) on record
        assert run.results.no_suggestion and run.results.certifications
        note["no_suggestion"] = run.results.no_suggestion
        print(json.dumps(note, indent=2))
        return
    evidence = suggestion.evidence
    verdict = evidence.evaluators["label"]
    note.update(lineage=[f"{s.move}: {s.detail}" for s in evidence.lineage], output_tokens=evidence.output_tokens,
                cost_per_call=[suggestion.baseline_cost_per_call, suggestion.candidate_cost_per_call],
                accuracy=[verdict.baseline_mean, verdict.candidate_mean], delta=verdict.delta,
                interval=[verdict.lower, verdict.upper], n=verdict.n, saving_share=evidence.savings.saving_share)
    print(json.dumps(note, indent=2))
    assert "trim_output" in [s.move for s in evidence.lineage]
    assert evidence.output_tokens[1] < evidence.output_tokens[0]
    assert verdict.lower > -0.05 and suggestion.candidate_cost_per_call < suggestion.baseline_cost_per_call
