"""The reasoning move: lower reasoning settings for models that take them (litellm's model map), a
model that does not reason where it is cheaper, and a whole run on the fake provider server (whose
reasoning tokens follow the setting) whose suggestion is priced from the logged reasoning tokens."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta

import httpx
import pytest
from sqlmodel import select

from trimloop.core.catalog import reasoning_params, resolve_model
from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.identity import version_identity
from trimloop.core.settings import GatewaySettings, ModelConfig, Settings
from trimloop.core.store import move_label
from trimloop.core.tables import LogRecord, Prompt, PromptVersion, Suggestion, utcnow
from trimloop.core.templates import Template
from trimloop.core.usage import usage_from
from trimloop.optimizer.moves import Reasoning
from trimloop.optimizer.run import create_run, execute_run
from trimloop.optimizer.spec import MoveContext, OutputFact, VersionSpec, start
from trimloop.testing.fake_openai import running
from trimloop.testing.sentiment import REPLIES, VERBOSE, review


def test_which_model_takes_what_comes_from_litellms_map() -> None:
    assert reasoning_params("gpt-5-mini") == {"reasoning_effort", "verbosity"}
    assert "thinking" in reasoning_params("claude-sonnet-4-6")
    assert reasoning_params("gpt-4.1-mini") == frozenset()


def context(models: list[str], reasoning: int = 400) -> MoveContext:
    settings = Settings()
    outputs = [OutputFact(" positive", 3 + reasoning, reasoning, True)] * 5
    return MoveContext(models=models, resolve=lambda m: resolve_model(settings, m), outputs=outputs)


async def test_lower_efforts_and_a_model_that_does_not_reason() -> None:
    root = start(VersionSpec(Template.plain("{{x}}"), "gpt-5-mini", {"max_tokens": 3, "reasoning_effort": "medium"}))
    proposals = await Reasoning().propose(root, context=context(["gpt-5-mini", "gpt-4.1-nano", "o4-mini"]))
    details = [p.lineage[-1]["detail"] for p in proposals]
    assert "reasoning_effort medium → minimal (the baseline's logs show 400 reasoning tokens per call)" in details
    assert any(d.startswith("reasoning_effort medium → low") for d in details)
    assert any(d.startswith("verbosity medium → low") for d in details)
    nano = next(p for p in proposals if p.version.model == "gpt-4.1-nano")
    assert "reasoning_effort" not in nano.version.params and nano.outlook.reasoning_tokens == 0
    assert all(p.version.model != "o4-mini" for p in proposals)  # a reasoning model is not "does not reason"
    low = next(p for p in proposals if p.version.params.get("reasoning_effort") == "low")
    assert low.outlook.reasoning_tokens == pytest.approx(100)
    none = await Reasoning().propose(root, context=context(["gpt-4.1-nano"], reasoning=0))
    assert [p.lineage[-1]["detail"] for p in none] == ["verbosity medium → low"]  # nothing logged to cut


async def test_anthropic_thinking_budgets_are_halved_or_turned_off() -> None:
    thinking = {"type": "enabled", "budget_tokens": 4096}
    root = start(VersionSpec(Template.plain("{{x}}"), "claude-sonnet-4-6", {"max_tokens": 5000, "thinking": thinking}))
    proposals = await Reasoning().propose(root, context=context([]))
    assert {json.dumps(p.version.params["thinking"], sort_keys=True) for p in proposals} >= {
        '{"budget_tokens": 2048, "type": "enabled"}', '{"type": "disabled"}'}


MODEL = "gpt-5-mini"
PARAMS = {"max_tokens": 3, "temperature": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):  # type: ignore[no-untyped-def]
    rules = tmp_path_factory.mktemp("replies") / "replies.json"
    rules.write_text(json.dumps(REPLIES))
    with running("--reasoning-tokens", "400", "--replies", str(rules)) as url:
        yield url


async def test_a_reasoning_effort_suggestion_is_priced_from_logged_reasoning_tokens(engine, tmp_path, server) -> None:
    settings = Settings(home=tmp_path / "home", gateway=GatewaySettings(max_retries=0, timeout_s=20),
                        models={MODEL: ModelConfig(api_base=f"{server}/v1", retires_on=date(2030, 1, 1))})
    model = resolve_model(settings, MODEL)
    rng, now = random.Random(11), utcnow()
    template = {"kind": "text", "text": VERBOSE}
    logged = []
    with session_scope(engine) as session, httpx.Client(base_url=server, timeout=30) as client:
        prompt = Prompt(name="sentiment", connector="files")
        session.add(prompt)
        session.flush()
        version = PromptVersion(prompt_id=prompt.id, sha=version_identity(template=template, model=MODEL, params=PARAMS),
                                template=template, model=MODEL, params=PARAMS, connector="files", external_version="1")
        session.add(version)
        session.flush()
        move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
        for i in range(200):
            text, _ = review(rng, i)
            answer = client.post("/v1/completions", json={"model": MODEL, "max_tokens": 3,
                                                          "prompt": VERBOSE.replace("{{text}}", text)}).json()
            usage = usage_from(answer["usage"])
            logged.append(usage)
            session.add(LogRecord(connector="files", external_id=f"log-{i}", prompt_id=prompt.id, version_id=version.id,
                                  inputs={"text": text}, output=answer["choices"][0]["text"], model=MODEL,
                                  input_tokens=usage.input, output_tokens=usage.output, reasoning_tokens=usage.reasoning,
                                  cost=model.cost(usage), latency_s=0.4,
                                  called_at=now - timedelta(days=27) + timedelta(hours=3 * i)))
        prompt_id = prompt.id
    assert {u.reasoning for u in logged} == {400}
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config={
            "models": [MODEL], "margin": 0.05, "dataset_size": 200, "rungs": [8, 24],
            "evaluators": {"matches_baseline": {"labels": ["positive", "negative"]}}}).id
    gateway = Gateway(settings, engine=engine)
    try:
        run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway)
    finally:
        await gateway.aclose()
    assert run.status == "succeeded", run.error
    assert run.results.suggestion_id is not None, (run.results.no_suggestion, run.results.certifications)
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
    evidence = suggestion.evidence
    step = next(s for s in evidence.lineage if s.move == "reasoning")
    assert step.detail.startswith("reasoning_effort medium → minimal") and "400 reasoning tokens" in step.detail
    assert evidence.reasoning_tokens == [400, 0]
    assert evidence.changes.params["reasoning_effort"] == [None, "minimal"]
    base_cpc = sum(model.cost(u) for u in logged) / len(logged)
    assert suggestion.baseline_cost_per_call == pytest.approx(base_cpc)  # the logged bills, reasoning included
    share = evidence.savings.saving_share
    assert share is not None and share["output"] > 0.9  # reasoning is billed as output
    print(json.dumps({"lineage": [s.detail for s in evidence.lineage], "reasoning_tokens": evidence.reasoning_tokens,
                      "cost_per_call": [suggestion.baseline_cost_per_call, suggestion.candidate_cost_per_call],
                      "saving_share": share}))
