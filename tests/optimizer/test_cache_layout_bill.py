"""A cache_layout suggestion on an Anthropic model, end to end on the fake provider server (its
Messages API, billing as Anthropic does: only at the caller's own cache_control breakpoints).

A week of production traffic (Poisson arrivals, ~400 calls a day) is replayed through the fake
server at its logged times (X-Fake-Clock) without breakpoints: those bills are the baseline's logs.
The run, through the real gateway and litellm's Anthropic client, proposes a breakpoint after the
static system prompt; the text sent is unchanged, so certification only checks that the outputs are
unchanged on a small sample. The projected monthly saving must match what the same traffic really
costs with the breakpoint — replayed through a fresh provider cache — within ±5 %."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import httpx
import pytest
from sqlmodel import select

from trimloop.core.catalog import resolve_model
from trimloop.core.db import session_scope
from trimloop.core.defaults import DAYS_PER_MONTH
from trimloop.core.gateway import Gateway
from trimloop.core.identity import version_identity
from trimloop.core.settings import GatewaySettings, ModelConfig, Settings
from trimloop.core.store import move_label
from trimloop.core.tables import LogRecord, Prompt, PromptVersion, Suggestion, utcnow
from trimloop.core.usage import usage_from
from trimloop.optimizer.caching import BREAKPOINTS
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_openai import running

MODEL = "anthropic/claude-sonnet-4-6"
RULES = [f"A ticket that names {topic} under code {i} must always get the label {label}."
         for i, (topic, label) in enumerate([("a charge, an invoice or a refund", "billing"),
                                             ("a crash, an error or a broken button", "bug"),
                                             ("a password, a login or a locked account", "account")] * 50)]
SYSTEM = ("You classify support tickets. Answer with exactly one label: billing, bug, account or other.\n"
          + "\n".join(RULES))
TEMPLATE = {"kind": "chat", "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Ticket: {{ticket}}"}]}
PARAMS = {"max_tokens": 3, "temperature": 0}
REPLIES = {"after": "Ticket: ", "rules": [["charge|invoice|refund", "billing"], ["crash|error|button", "bug"],
                                          ["password|login|locked", "account"]], "default": "other"}
TICKETS = ["I was charged twice for March", "the app crashes on start", "I forgot my password",
           "where is your office", "refund my invoice please", "the save button gives an error",
           "my account is locked", "do you have a student discount"]
DAYS, PER_DAY = 7, 400


def traffic(seed: int) -> list[tuple[float, str]]:
    """(seconds since the start, ticket) of every call: Poisson arrivals, ~PER_DAY a day."""
    rng, t, out = random.Random(seed), 0.0, []
    while True:
        t += rng.expovariate(PER_DAY / 86400)
        if t >= DAYS * 86400:
            return out
        out.append((t, f"{rng.choice(TICKETS)} (order {rng.randint(1000, 99999)})"))


def replay(url: str, calls: list[tuple[float, str]], *, breakpoint: bool) -> list[dict]:
    """Each call sent to the fake Messages API at its own time, as litellm sends it; the answers."""
    system = {"type": "text", "text": SYSTEM} | ({"cache_control": {"type": "ephemeral"}} if breakpoint else {})
    out = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for at, ticket in calls:
            body = {"model": "claude-sonnet-4-6", "max_tokens": 3, "system": [system],
                    "messages": [{"role": "user", "content": [{"type": "text", "text": f"Ticket: {ticket}"}]}]}
            out.append(client.post("/v1/messages", json=body, headers={"X-Fake-Clock": str(at)}).json())
    return out


@pytest.fixture(scope="module")
def servers(tmp_path_factory):  # type: ignore[no-untyped-def]
    rules = tmp_path_factory.mktemp("replies") / "replies.json"
    rules.write_text(json.dumps(REPLIES))
    args = ("--prompt-cache", "anthropic", "--explicit-breakpoints", "--replies", str(rules))
    with running(*args) as replays, running(*args) as live:
        yield replays, live


async def test_a_breakpoint_suggestion_projects_the_bill_the_provider_sends(engine, tmp_path, servers) -> None:
    replays, live = servers
    settings = Settings(home=tmp_path / "home", gateway=GatewaySettings(max_retries=0, timeout_s=20),
                        models={MODEL: ModelConfig(api_base=live, via_litellm=True)})
    model = resolve_model(settings, MODEL)
    calls = traffic(seed=5)
    answers = replay(replays, calls, breakpoint=False)
    start = utcnow() - timedelta(days=DAYS)
    base_bill = 0.0
    with session_scope(engine) as session:
        prompt = Prompt(name="triage", connector="files")
        session.add(prompt)
        session.flush()
        version = PromptVersion(prompt_id=prompt.id, sha=version_identity(template=TEMPLATE, model=MODEL, params=PARAMS),
                                template=TEMPLATE, model=MODEL, params=PARAMS, connector="files", external_version="1")
        session.add(version)
        session.flush()
        move_label(session=session, prompt_id=prompt.id, label="production", version_id=version.id)
        for i, ((at, ticket), answer) in enumerate(zip(calls, answers)):
            usage = usage_from(answer["usage"])
            cost = model.cost(usage)
            base_bill += cost
            session.add(LogRecord(connector="files", external_id=f"log-{i}", prompt_id=prompt.id, version_id=version.id,
                                  inputs={"ticket": ticket}, output=answer["content"][0]["text"], model=MODEL,
                                  input_tokens=usage.input, output_tokens=usage.output, cached_input_tokens=usage.cached,
                                  cache_write_tokens=usage.cache_write, cost=cost, latency_s=0.2,
                                  called_at=start + timedelta(seconds=at)))
        prompt_id = prompt.id
    assert all(usage_from(a["usage"]).cached == 0 for a in answers)  # no breakpoint, no cache

    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config={
            "models": [MODEL], "evaluators": {"matches_baseline": {"labels": ["billing", "bug", "account", "other"]}},
            "dataset_size": 200, "holdout_fraction": 0.6, "rungs": [8, 24], "window_days": DAYS,
            "margin": 0.05}).id
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
    assert [s.move for s in evidence.lineage] == ["cache_layout"]
    assert evidence.lineage[0].model_extra.get("same_text") is True
    assert evidence.changes.params[BREAKPOINTS] == [None, [{"location": "message", "index": 0}]]
    assert [op for op, _ in evidence.changes.template_diff] == ["equal"]  # the text is the same
    assert "outputs identical to the baseline's on 10 of 10" in evidence.verdict and evidence.n == 10

    cand_bill = sum(model.cost(usage_from(a["usage"])) for a in replay(replays, calls, breakpoint=True))
    replayed = (base_bill - cand_bill) / DAYS * DAYS_PER_MONTH
    projected = suggestion.projected_monthly_savings
    print(json.dumps({"projected_monthly": projected, "replayed_monthly": replayed, "error": projected / replayed - 1,
                      "calls": len(calls), "saving_share": evidence.savings.saving_share}))
    assert replayed > 0 and abs(projected / replayed - 1) <= 0.05, (projected, replayed)
    share = evidence.savings.saving_share
    assert share is not None and share["cached"] > 0.95  # the saving is the cache's
