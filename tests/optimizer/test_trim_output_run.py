"""A whole run on a prompt whose model rambles past its answer: trim_output caps max_tokens, the cap
is certified like any move, and the saving is priced on output tokens (fake provider, real gateway)."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlmodel import select

from trimloop.core.catalog import count_tokens, resolve_model
from trimloop.core.db import session_scope
from trimloop.core.identity import version_identity
from trimloop.core.store import move_label
from trimloop.core.tables import LogRecord, Prompt, PromptVersion, Suggestion, utcnow
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_provider import FakeProvider
from trimloop.testing.sentiment import VERBOSE, classify, prompt_text, review

RAMBLE = "\n\nReview: Another film, and the critic keeps writing about the lighting, the music and the cast."
PARAMS = {"max_tokens": 40, "temperature": 0}


def rambling(model: str, prompt) -> str:  # type: ignore[no-untyped-def]
    return classify(prompt_text(prompt)) + RAMBLE


def seed(engine, settings) -> int:  # type: ignore[no-untyped-def]
    rng = random.Random(3)
    now = utcnow()
    template = {"kind": "text", "text": VERBOSE}
    gemma = resolve_model(settings, "local/gemma3-270m")
    with session_scope(engine) as session:
        prompt = Prompt(name="sentiment", connector="files")
        session.add(prompt)
        session.flush()
        version = PromptVersion(prompt_id=prompt.id, sha=version_identity(template=template, model="local/gemma3-270m",
                                                                          params=PARAMS),
                                template=template, model="local/gemma3-270m", params=PARAMS, connector="files",
                                external_version="1")
        session.add(version)
        session.flush()
        move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
        for i in range(200):
            text, label = review(rng, i)
            output = (f" {label}" + RAMBLE)
            tokens = min(40, count_tokens(output))
            session.add(LogRecord(connector="files", external_id=f"log-{i}", prompt_id=prompt.id,
                                  version_id=version.id, inputs={"text": text}, output=output,
                                  model="local/gemma3-270m", input_tokens=160, output_tokens=tokens,
                                  cost=gemma.price(160, tokens), latency_s=0.3,
                                  called_at=now - timedelta(days=27) + timedelta(hours=3 * i)))
        return prompt.id


async def test_a_rambling_prompt_gets_a_certified_max_tokens_cap(engine, settings, gateway_for) -> None:
    prompt_id = seed(engine, settings)
    gateway = gateway_for(FakeProvider(responder=rambling))
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config={
            "models": ["local/gemma3-270m"], "evaluators": {"matches_baseline": {"labels": ["positive", "negative"]}},
        }).id
    run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway)
    assert run.status == "succeeded", run.error
    assert run.results.suggestion_id is not None, (run.results.no_suggestion, run.results.certifications)
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
    evidence = suggestion.evidence
    steps = [s.move for s in evidence.lineage]
    assert "trim_output" in steps
    cap = evidence.changes.params["max_tokens"]
    assert cap[0] == 40 and count_tokens(" negative") <= cap[1] < 40
    before, after = evidence.output_tokens
    assert after < before / 2  # the ramble is cut, the label stays
    assert evidence.evaluators["matches_baseline"].verdict == "non-inferior"
    share = evidence.savings.saving_share
    assert share is not None and share["output"] > 0.2 and abs(sum(share.values()) - 1) < 1e-3  # composed with shorter input
    assert suggestion.candidate_cost_per_call < suggestion.baseline_cost_per_call
    assert "max_tokens 40 →" in " ".join(s.detail for s in evidence.lineage)
