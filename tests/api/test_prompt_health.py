"""Prompt health through the service, as a team meets it: a broken prompt (its answers agree with
the reviewers' labels less often than always giving the most common label would) is `broken` with
the numbers on demand; `trimloop optimize` ends `baseline_unhealthy` with no search call; exactly
one `prompt.unhealthy` notification reaches the webhook receiver; the scheduler's pass skips it.
Every model call would go through the real Gateway to a fake provider (none is made)."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from trimloop.api import webhooks
from trimloop.api.app import create_app
from trimloop.api.cli import _register, app
from trimloop.api.scheduler import Worker
from trimloop.core import store
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.core.gateway import Gateway
from trimloop.core.settings import load_settings
from trimloop.testing.fake_provider import NOWHERE, FakeProvider

from tests.api.test_webhooks import Receiver
from tests.evals.health_seed import LABELS, seed_triage

SECRET = "s3cret-for-health"
runner = CliRunner()
_register()


class NoModels:
    """What `real_gateway` returns beside the gateway: nothing to stop (no bundled model runs)."""

    def stop(self) -> None:
        pass


def toml(receiver_url: str) -> str:
    return f"""
[models."fake/big"]
api_base = "{NOWHERE}"
input_per_mtok = 50
output_per_mtok = 100

[models."fake/small"]
api_base = "{NOWHERE}"
input_per_mtok = 5
output_per_mtok = 10

[prompts.triage]
expected_from = "label"
rungs = [8, 24]
dataset_size = 200
holdout_fraction = 0.6
models = ["fake/small"]
margin = 0.05
evaluators = {{label = {{labels = {json.dumps(LABELS)}}}}}

[[webhooks]]
url = "{receiver_url}"
events = ["prompt.unhealthy", "run.failed", "suggestion.created"]
secret_env = "TEST_HOOK_SECRET"
backoff_base_s = 0.01
"""


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    r = Receiver()
    yield r
    r.close()


def test_a_broken_prompt_is_flagged_once_not_searched_and_skipped(home_db, tmp_path, monkeypatch, receiver):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    (tmp_path / "trimloop.toml").write_text(toml(receiver.url))
    settings = load_settings()
    upgrade(home_db)
    engine = make_engine(home_db)
    try:
        prompt_id = seed_triage(engine, quality="broken")
        with session_scope(engine) as session:
            _, viewer = store.create_token(session=session, name="finance", role="viewer", actor="test")
        bearer = {"Authorization": f"Bearer {viewer}"}

        # 1. on demand: broken, with the numbers behind it, and one notification
        with TestClient(create_app(settings, engine)) as client:
            reply = client.get(f"/prompts/{prompt_id}/health", headers=bearer)
            assert reply.status_code == 200, reply.text
            report = reply.json()
            assert report["verdict"] == "broken" and report["calls"] == 300
            [check] = report["label_checks"]
            assert check["broken"] and check["accuracy"] < check["majority_rate"] and check["n"] == 300
            assert report["reasons"][0].startswith("label: agrees with reviewer labels on ")
            assert "always answering the most common label (billing) would score" in report["reasons"][0]
            assert "of answers name no label" in report["reasons"][0]
            [listed] = client.get("/prompts", headers=bearer).json()
            assert listed["health"] == "broken" and listed["health_checked_at"]
            again = client.get(f"/prompts/{prompt_id}/health", headers=bearer).json()  # no change: no notification
            assert again["verdict"] == "broken"
        assert len(receiver.requests) == 1

        # 2. `trimloop optimize` ends baseline_unhealthy without a search call
        provider = FakeProvider(responder=lambda model, prompt: "billing")
        monkeypatch.setattr("trimloop.api.cli.optimize.real_gateway",
                            lambda s, e: (Gateway(s, engine=e, provider=provider), NoModels()))
        result = runner.invoke(app, ["optimize", "triage", "--json"])
        assert result.exit_code == 1, result.output
        summary = json.loads(result.output)
        assert summary["status"] == "baseline_unhealthy" and summary["search_calls"] == 0 and summary["calls"] == 0
        assert summary["baseline_health"]["verdict"] == "broken"
        assert "agrees with reviewer labels on" in summary["no_suggestion"]
        assert provider.attempts == 0
        shown = runner.invoke(app, ["optimize", "triage"], env={"COLUMNS": "300"})
        assert "baseline_unhealthy" in shown.output and "search calls: 0" in shown.output

        # 3. the scheduler's pass checks health again (still broken: no new notification) and skips it
        async def one_pass():  # type: ignore[no-untyped-def]
            async with Gateway(settings, engine=engine, provider=provider) as gateway:
                return await Worker(engine=engine, settings=settings, gateway=gateway, name="w1").run_pass(do_sync=False)

        report = asyncio.run(one_pass())
        assert report.health == {prompt_id: "broken"} and report.health_changes == []
        [decision] = report.decisions
        assert not decision.due and "broken" in decision.reason, decision.reason
        assert report.queued == [] and report.executed == [] and provider.attempts == 0

        # exactly one notification, signed, in both the JSON shape and its words
        [(headers, body)] = receiver.requests
        assert headers["X-Trimloop-Event"] == "prompt.unhealthy"
        assert webhooks.verify(SECRET, headers["X-Trimloop-Timestamp"], body, headers["X-Trimloop-Signature"])
        event = json.loads(body)
        assert event["data"]["prompt_id"] == prompt_id and event["data"]["health"] == "broken"
        assert event["data"]["before"] == "unknown" and "would score" in event["data"]["summary"]
        assert event["link"].endswith(f"/ui/prompts/{prompt_id}/health")
    finally:
        engine.dispose()


def test_the_slack_payload_of_prompt_unhealthy(tmp_path):
    from trimloop.core.settings import Settings, WebhookConfig

    settings = Settings(home=tmp_path / "home")
    change = webhooks.HealthChange(prompt_id=3, prompt="triage", before="healthy", after="degraded",
                                   reasons=["evaluator:label: 61 % over the last 3 days (n=150) against 92 % before"])
    hook = WebhookConfig(url="http://127.0.0.1:9/hook", format="slack", events=["prompt.unhealthy"])
    body = webhooks.body_for(settings, hook, "prompt.unhealthy", webhooks.health_event(change))
    assert "prompt unhealthy" in body["text"] and "/ui/prompts/3/health" in body["text"]
    assert "61 % over the last 3 days" in body["blocks"][0]["text"]["text"]
    assert webhooks.HealthChange(prompt_id=3, prompt="t", before="broken", after="healthy").unhealthy is False


def test_health_of_an_unknown_prompt_is_404_and_bad_options_are_400(headers, settings, engine):
    from tests.api.conftest import synced

    prompt_id = synced(engine, settings)
    bad = settings.model_copy(update={"prompts": {"triage": {"health": {"window_days": 1}}}})
    with TestClient(create_app(bad, engine)) as client:
        missing = client.get("/prompts/999/health", headers=headers["viewer"])
        assert missing.status_code == 404 and "no prompt with id 999" in missing.json()["error"]["message"]
        wrong = client.get(f"/prompts/{prompt_id}/health", headers=headers["viewer"])
        assert wrong.status_code == 400, wrong.text
        error = wrong.json()["error"]
        assert error["where"] == "[prompts.triage.health].window_days" and "greater than or equal to 2" in error["message"]
    with TestClient(create_app(settings, engine)) as client:  # no gold, no feedback: unknown, with why
        report = client.get(f"/prompts/{prompt_id}/health", headers=headers["viewer"]).json()
        assert report["verdict"] == "unknown" and report["calls"] == 20 and report["reasons"]


def test_trimloop_health_prints_each_verdict_with_its_numbers(home_db, tmp_path):
    (tmp_path / "trimloop.toml").write_text(
        f'[prompts.triage]\nexpected_from = "label"\nevaluators = {{label = {{labels = {json.dumps(LABELS)}}}}}\n'
        f'[prompts.triage-v2]\nexpected_from = "label"\n')
    upgrade(home_db)
    engine = make_engine(home_db)
    try:
        seed_triage(engine, quality="broken")
        seed_triage(engine, quality="good", name="triage-v2", seed=5)  # default evaluators: label, from the gold
    finally:
        engine.dispose()
    shown = runner.invoke(app, ["health"], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert "triage: broken (300 calls in 14 days)" in shown.output and "triage-v2: healthy" in shown.output
    assert "always answering the most common label (billing) would score" in shown.output
    assert "format:no_label" in shown.output and "latency_p95_s" in shown.output
    one = runner.invoke(app, ["health", "triage-v2", "--json"])
    assert one.exit_code == 0, one.output
    body = json.loads(one.output)
    assert list(body) == ["triage-v2", "problems"] and body["triage-v2"]["verdict"] == "healthy"
    unknown = runner.invoke(app, ["health", "triaje"])
    assert "triaje" in unknown.exception.message and "triage" in unknown.exception.hint
