"""Issue 15's repair must-show on the bundled models: a chat prompt whose answers do not follow
the answer format gets a repair suggestion certified by the superiority test (or an honest "no
repair found" with the evidence).

Production: SmolLM2 135M Instruct with a chat prompt that asks how a review's writer feels about
the film but never says how to answer; its logs are really produced on SST-2 test sentences, with
the gold label as reviewer feedback. Its answers are sentences that name no label, so the prompt
is `broken` (evals.health). A repair run (`repair = true`) races the repair moves on both bundled
models — the answer format stated (rule, rule + reminder, chat → completion form), the prompt on
Gemma 3 270M (completion form) — and certifies on the holdout with the superiority test.
Run with `-s` to see the numbers.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.identity import version_identity
from trimloop.core.settings import Settings
from trimloop.core.tables import LogRecord, Prompt, PromptVersion, Suggestion, utcnow
from trimloop.core.templates import Template, render
from trimloop.optimizer.run import create_run, execute_run

# the bundled models run once, on SQLite; the fake-gateway twin runs on PostgreSQL too
pytestmark = [pytest.mark.integration, pytest.mark.sqlite_only]

SST2 = next((p / "shared" / "datasets" / "sst2" / "test.jsonl" for p in Path(__file__).resolve().parents
             if (p / "shared" / "datasets" / "sst2" / "test.jsonl").exists()),
            Path("shared") / "datasets" / "sst2" / "test.jsonl")  # beside the checkout (or a worktree's parents)
MODEL = "local/smollm2-135m"
TEMPLATE = {"kind": "chat", "messages": [
    {"role": "system", "content": "You are a helpful assistant for a film magazine."},
    {"role": "user", "content": "How does the writer of this movie review feel about the film?\n\n{{text}}"}]}
PARAMS = {"temperature": 0, "max_tokens": 16}
N = 240  # logged calls: 96 for the search, 144 in the holdout
OPTIONS = {"expected_from": "expected", "evaluators": {"label": {"labels": ["positive", "negative"]}},
           "dataset_size": N, "holdout_fraction": 0.6, "rungs": [16, 48], "max_candidates": 16,
           "models": ["local/smollm2-135m", "local/gemma3-270m"], "concurrency": 2, "repair": True}


@pytest.fixture(scope="module")
def sentences() -> list[dict[str, str]]:
    if not SST2.exists():
        pytest.skip(f"shared datasets not found at {SST2}")
    return [json.loads(line) for line in SST2.read_text().splitlines()[:N]]


@pytest.fixture(scope="module")
def answers(local_models: Settings, sentences: list[dict[str, str]]) -> list[Any]:
    """The production version's answers, really produced by SmolLM2 135M."""
    async def run() -> list[Any]:
        gateway = Gateway(local_models, cache=False)
        limit = asyncio.Semaphore(2)

        async def one(item: dict[str, str]) -> Any:
            async with limit:
                return await gateway.call(MODEL, messages=render(Template.model_validate(TEMPLATE),  # type: ignore[arg-type]
                                                                 {"text": item["text"]}), params=PARAMS)
        try:
            return await asyncio.gather(*(one(i) for i in sentences))
        finally:
            await gateway.aclose()

    return asyncio.run(run())


def seed(engine, sentences: list[dict[str, str]], answers: list[Any]) -> int:  # type: ignore[no-untyped-def]
    now = utcnow()
    with session_scope(engine) as session:
        prompt = Prompt(name="reviews", connector="files")
        session.add(prompt)
        session.flush()
        version = PromptVersion(prompt_id=prompt.id, sha=version_identity(template=TEMPLATE, model=MODEL, params=PARAMS),
                                template=TEMPLATE, model=MODEL, params=PARAMS, connector="files", external_version="1")
        session.add(version)
        session.flush()
        store.move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
        for k, (item, r) in enumerate(zip(sentences, answers, strict=True)):
            session.add(LogRecord(
                connector="files", external_id=item["id"], prompt_id=prompt.id, version_id=version.id,
                inputs={"text": item["text"]}, output=r.output, model=MODEL, input_tokens=r.input_tokens,
                output_tokens=r.output_tokens, cost=r.cost, latency_s=r.latency_s,
                called_at=now - timedelta(days=6) + timedelta(minutes=30 * k),
                feedback=[{"name": "expected", "value": item["label"], "source": "reviewer"}]))
        return prompt.id  # type: ignore[return-value]


def test_a_chat_prompt_that_ignores_the_answer_format_gets_a_certified_repair(engine, local_models, sentences,
                                                                              answers):
    prompt_id = seed(engine, sentences, answers)
    settings = local_models.model_copy(update={"prompts": {"reviews": OPTIONS}})
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, budget_calls=1200).id

    async def repair():  # type: ignore[no-untyped-def]
        async with Gateway(settings, engine=engine) as gateway:
            return await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway)

    run = asyncio.run(repair())
    assert run.status == "succeeded", run.error
    results = run.results
    assert results.baseline_health.verdict == "broken", results.baseline_health.reasons
    print("\nbaseline health:", results.baseline_health.message())
    print("repair run:", run.calls_made, "calls,", f"${run.spent_dollars:.6f} (notional local prices)")
    for c in results.certifications:
        print("certified" if c.passed else "not certified", c.label, "—", c.reason)
    if results.suggestion_id is None:  # an honest "no repair found", with the evidence
        assert results.no_suggestion.startswith("no repair found") and results.repair.best is not None
        print(results.no_suggestion)
        pytest.fail(f"no repair found on the bundled models: {results.no_suggestion}")
    with session_scope(engine) as session:
        s = session.get(Suggestion, results.suggestion_id)
        assert s.kind == "repair" and s.evidence.kind == "repair"
        verdict = s.evidence.evaluators["label"]
        gain = s.evidence.repair.gains["label"]
        assert verdict.test == "superiority" and verdict.verdict == "superior" and verdict.lower > 0.05
        assert gain.after > gain.before and gain.lower == verdict.lower
        assert gain.n == 144  # a repair is tested on the whole holdout
        print("suggestion", s.id, "—", results.suggestion_cut)
        print("lineage:", [(step.move, step.detail) for step in s.evidence.lineage])
        print(f"label accuracy {gain.before:.3f} → {gain.after:.3f} on {gain.n} holdout items; gain {gain.delta:+.3f}, "
              f"one-sided 95 % interval [{gain.lower:+.3f}, {gain.upper:+.3f}] (min effect {gain.min_effect})")
        before, after = s.evidence.repair.cost_per_call
        print(f"cost per call ${before:.3g} → ${after:.3g} ({s.evidence.repair.cost_change * 100:+.0f} %)")
