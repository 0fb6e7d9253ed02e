"""Issue 15's post-deploy must-show on the bundled models, through a files prompt store.

Production: Gemma 3 270M with a few-shot SST-2 sentiment prompt; its logs are really produced on
SST-2 sentences, with the gold label as reviewer feedback. The suggestion keeps the prompt and
lowers max_tokens (3 → 2); it is approved and deployed through the API.

- Fresh traffic it handles as well (new SST-2 sentences, really answered by the deployed version),
  with paired shadow scoring (the old version re-run on the same live inputs through the gateway):
  `holding`, and no alert.
- The same deployment after its provider changes the model behind its name (a test double: the
  deployed version's real answers, except that one input in four, fixed by its id, now gets a
  refusal — what a safety-tuning update does), with shadow scoring: `regressed` within a bounded
  number of items, the alert delivered to a webhook receiver, `production` rolled back in the files
  store under policy rollback, and the audit entries written.

Why not a real smaller model behind the name: SmolLM2 135M answers this prompt only ~5 points
below Gemma (0.849 vs 0.898 on 1,621 SST-2 sentences), no more than the 5-point margin, so no
watch should call that `regressed` (bench.watch: a 5-point drop against a 2-point margin takes a
median of 700 shadow-scored items); an earlier version of this test passed in earlier CI runs and
then, with the same code, was inconclusive at 200 items (0.84 vs 0.91, high +0.033).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.api.conftest import ROLES
from tests.api.test_webhooks import SECRET, Receiver
from trimloop.api import services
from trimloop.api.app import create_app
from trimloop.connectors.sync import sync
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.identity import version_identity
from trimloop.core.settings import ConnectorConfig, Settings, WebhookConfig
from trimloop.core.tables import AuditEvent, Prompt, PromptVersion, Suggestion, Watch
from trimloop.core.templates import Template, render

# the bundled models run once, on SQLite; the fake-gateway twin runs on PostgreSQL too
pytestmark = [pytest.mark.integration, pytest.mark.sqlite_only]

SST2 = next((p / "shared" / "datasets" / "sst2" / "test.jsonl" for p in Path(__file__).resolve().parents
             if (p / "shared" / "datasets" / "sst2" / "test.jsonl").exists()),
            Path("shared") / "datasets" / "sst2" / "test.jsonl")  # beside the checkout (or a worktree's parents)
EXAMPLES = [("a gorgeous , witty , seductive movie .", "positive"),
            ("the movie is a disaster from start to finish .", "negative"),
            ("an utterly charming and hilarious film .", "positive"),
            ("it 's a bore , plain and simple .", "negative")]
PROMPT = ("Classify the sentiment of each movie review sentence as positive or negative. Answer with one word.\n\n"
          + "".join(f"Review: {t}\nSentiment: {s}\n\n" for t, s in EXAMPLES) + "Review: {{text}}\nSentiment:")
OLD_PARAMS = {"temperature": 0, "max_tokens": 3, "stop": ["\n"]}
NEW_PARAMS = {"temperature": 0, "max_tokens": 2, "stop": ["\n"]}
EVALUATORS = {"label": {"labels": ["positive", "negative"], "mode": "first"}}


@pytest.fixture(scope="module")
def sentences() -> list[dict[str, str]]:
    if not SST2.exists():
        pytest.skip(f"shared datasets not found at {SST2}")
    return [json.loads(line) for line in SST2.read_text().splitlines()[:600]]


async def answer(settings: Settings, model: str, params: dict[str, Any], items: list[dict[str, str]]) -> list[Any]:
    gateway = Gateway(settings, cache=False)
    limit = asyncio.Semaphore(2)

    async def one(item: dict[str, str]) -> Any:
        async with limit:
            return await gateway.call(model, text=render(Template.plain(PROMPT), {"text": item["text"]}),  # type: ignore[arg-type]
                                      params=params)
    try:
        return await asyncio.gather(*(one(i) for i in items))
    finally:
        await gateway.aclose()


def log_lines(results: list[Any], items: list[dict[str, str]], version: str, model: str, start: datetime,
              tag: str) -> str:
    return "".join(json.dumps({
        "id": f"{tag}-{item['id']}", "prompt": "sentiment", "version": version, "inputs": {"text": item["text"]},
        "output": r.output, "model": model, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
        "cost": r.cost, "latency_s": r.latency_s, "called_at": (start + timedelta(seconds=5 * k)).isoformat(),
        "feedback": [{"name": "expected", "value": item["label"], "source": "reviewer"}]}) + "\n"
        for k, (r, item) in enumerate(zip(results, items, strict=True)))


REFUSAL = "I'm sorry, but I can't help with that request."


def refuse_some(results: list[Any], items: list[dict[str, str]]) -> list[Any]:
    """The provider's update: one input in four (fixed by a hash of its id) is refused."""
    return [dataclasses.replace(r, output=REFUSAL, output_tokens=12)
            if hashlib.sha256(str(item["id"]).encode()).digest()[0] % 4 == 0 else r
            for r, item in zip(results, items, strict=True)]


@pytest.fixture(scope="module")
def old_logs(local_models: Settings, sentences: list[dict[str, str]]) -> str:
    """The production version's logs: 160 SST-2 sentences really answered by Gemma 270M, days ago."""
    items = sentences[:160]
    results = asyncio.run(answer(local_models, "local/gemma3-270m", OLD_PARAMS, items))
    return log_lines(results, items, "1", "local/gemma3-270m", datetime.now(timezone.utc) - timedelta(days=3), "old")


@pytest.fixture
def workspace(tmp_path: Path, local_models: Settings, old_logs: str, receiver: Receiver, monkeypatch
              ) -> tuple[Path, Settings]:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    folder = tmp_path / "store"
    (folder / "prompts" / "sentiment").mkdir(parents=True)
    (folder / "logs").mkdir()
    front = yaml.safe_dump({"model": "local/gemma3-270m", "params": OLD_PARAMS, "labels": ["production"]})
    (folder / "prompts" / "sentiment" / "1.md").write_text(f"---\n{front}---\n{PROMPT}\n")
    (folder / "logs" / "old.jsonl").write_text(old_logs)
    settings = local_models.model_copy(update={  # its home holds the bundled servers' key
        "connectors": {"local": ConnectorConfig(type="files", path=str(folder))},
        "webhooks": [WebhookConfig(url=receiver.url, secret_env="TEST_HOOK_SECRET", events=["watch.regressed"],
                                   backoff_base_s=0.01)],
        "api": local_models.api.model_copy(update={"failed_logins_per_minute": 1000})})
    return folder, settings


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    r = Receiver()
    yield r
    r.close()


def deploy(engine, settings: Settings) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Sync, leave the optimizer's suggestion (max_tokens 3 → 2), approve and deploy it through the API."""
    assert not sync(engine=engine, settings=settings)[0].fatal
    with session_scope(engine) as session:
        prompt_id = session.exec(select(Prompt.id).where(Prompt.name == "sentiment")).one()
        baseline_id = store.production_version_id(session=session, prompt_id=prompt_id)
        template = Template.plain(PROMPT).model_dump()
        sha = version_identity(template=template, model="local/gemma3-270m", params=NEW_PARAMS)
        version = PromptVersion(prompt_id=prompt_id, sha=sha, template=template, model="local/gemma3-270m",
                                params=NEW_PARAMS, connector="trimloop", labels=[])
        session.add(version)
        session.flush()
        suggestion = Suggestion(prompt_id=prompt_id, baseline_version_id=baseline_id,  # type: ignore[arg-type]
                                candidate_version_id=version.id, candidate_sha=sha,  # type: ignore[arg-type]
                                evidence={"holdout_n": 100, "evaluators": {"label": {"lower": -0.01, "margin": 0.05,
                                                                                     "verdict": "pass"}}})
        session.add(suggestion)
        session.flush()
        sid = suggestion.id
        tokens = {role: store.create_token(session=session, name=role, role=role, actor="test")[1] for role in ROLES}
    with TestClient(create_app(settings, engine)) as client:
        for step, role in (("approve", "reviewer"), ("deploy", "engineer")):
            reply = client.post(f"/suggestions/{sid}/{step}", headers={"Authorization": f"Bearer {tokens[role]}"})
            assert reply.status_code == 200, reply.text
    with session_scope(engine) as session:
        s = session.get(Suggestion, sid)
        external = session.get(PromptVersion, s.candidate_version_id).external_version  # type: ignore[union-attr]
    return sid, external  # type: ignore[return-value]


def prompts(settings: Settings, **watch: Any) -> Settings:
    return settings.model_copy(update={"prompts": {"sentiment": {
        "evaluators": EVALUATORS, "expected_from": "expected", "margin": 0.05, "watch": watch}}})


def test_fresh_traffic_it_handles_as_well_holds_without_alert(engine, workspace, receiver, sentences):
    folder, settings = workspace
    settings = prompts(settings, shadow_per_day=200, on_regression="rollback")
    sid, version = deploy(engine, settings)
    fresh = sentences[200:400]  # sentences neither version has seen in the logs
    results = asyncio.run(answer(settings, "local/gemma3-270m", NEW_PARAMS, fresh))
    (folder / "logs" / "new.jsonl").write_text(
        log_lines(results, fresh, version, "local/gemma3-270m", datetime.now(timezone.utc) + timedelta(seconds=1), "new"))
    [look] = services.sync(engine=engine, settings=settings, actor="test",
                           gateway_factory=lambda: Gateway(settings, engine=engine)).watches
    assert look.verdict == "holding" and look.action is None and look.error is None, look
    [check] = look.checks
    assert check["mode"] == "paired" and check["n_new"] == 200 and check["low"] > -0.05
    assert receiver.requests == []
    with session_scope(engine) as session:
        watch = session.exec(select(Watch).where(Watch.suggestion_id == sid)).one()
        assert watch.shadow_items == 200 and watch.shadow_cost > 0
        assert session.get(Suggestion, sid).status == "deployed"  # type: ignore[union-attr]


def test_a_model_changed_behind_its_name_regresses_and_is_rolled_back(engine, workspace, receiver, sentences):
    folder, settings = workspace
    settings = prompts(settings, on_regression="rollback", shadow_per_day=200)
    sid, version = deploy(engine, settings)
    start = datetime.now(timezone.utc) + timedelta(seconds=1)
    shadow = lambda: Gateway(settings, engine=engine)  # noqa: E731 - the old version, re-run on live inputs
    looks = []
    for batch in range(8):  # 25 live calls per sync, answered by the model now behind the name
        fresh = sentences[200 + 25 * batch:225 + 25 * batch]
        results = refuse_some(asyncio.run(answer(settings, "local/gemma3-270m", NEW_PARAMS, fresh)), fresh)
        with (folder / "logs" / "new.jsonl").open("a") as handle:
            handle.write(log_lines(results, fresh, version, "local/gemma3-270m", start + timedelta(minutes=5 * batch),
                                   f"new{batch}"))
        outcome = services.sync(engine=engine, settings=settings, actor="test", gateway_factory=shadow)
        if not outcome.watches:
            break
        looks.append(outcome.watches[0])
        if looks[-1].verdict == "regressed":
            break
    assert looks[-1].verdict == "regressed" and looks[-1].action == "rolled_back", looks[-1]
    items = 25 * len(looks)
    assert items <= 150, f"regressed only after {items} items"  # caught at 75 when measured (0.68 vs 0.92)
    [check] = looks[-1].checks
    assert check["mode"] == "paired" and check["high"] < -0.05 and check["mean_new"] < check["mean_old"]
    labels = yaml.safe_load((folder / "prompts" / "sentiment" / "labels.yaml").read_text())
    assert labels["production"] == "1"
    [(head, body)] = receiver.requests
    assert head["X-Trimloop-Event"] == "watch.regressed" and json.loads(body)["data"]["action"] == "rolled_back"
    with session_scope(engine) as session:
        assert session.get(Suggestion, sid).status == "rolled_back"  # type: ignore[union-attr]
        actions = set(session.exec(select(AuditEvent.action).where(col(AuditEvent.object_id) == str(sid))).all())
    assert {"watch.verdict", "suggestion.rollback", "watch.rolled_back"} <= actions
