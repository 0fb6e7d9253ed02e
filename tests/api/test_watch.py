"""The post-deploy watch on a files prompt store: every sync checks a deployed suggestion's live
signals against the old version's; a regression alerts a real webhook receiver and, under policy
rollback, moves `production` back through the connector with an audit entry; a version that holds
(paired shadow scores through the real gateway and a fake provider) raises nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.api.conftest import PROMPT_V1, make_suggestion, synced
from tests.api.test_webhooks import SECRET, Receiver, hooked
from trimloop.api import services
from trimloop.api.app import create_app
from trimloop.core.db import session_scope
from trimloop.core.errors import ConfigError
from trimloop.core.gateway import Gateway
from trimloop.core.settings import Settings
from trimloop.core.tables import AuditEvent, PromptVersion, ShadowScore, Suggestion, Watch
from trimloop.optimizer.config import check_run_config
from trimloop.testing.fake_provider import FakeProvider

LABELS = ("billing", "bug")


def traffic(folder: Path, version: str, start: datetime, n: int, accuracy: float, name: str,
            first: int = 0) -> None:
    """`n` logged calls of `version` with the reviewer's label as feedback; a fixed share is right."""
    lines = []
    for i in range(first, first + n):
        truth = LABELS[i % 2]
        right = (i * 37) % 100 < accuracy * 100
        lines.append(json.dumps({
            "id": f"{name}-{i}", "prompt": "triage", "version": version,
            "inputs": {"ticket": f"ticket {i} about {truth}"},
            "output": truth if right else LABELS[1 - i % 2], "model": "big/model", "cost": 0.002,
            "latency_s": 0.2, "input_tokens": 30, "output_tokens": 1,
            "called_at": (start + timedelta(seconds=20 * (i - first))).isoformat(),
            "feedback": [{"name": "expected", "value": truth, "source": "reviewer"}]}))
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    with (folder / "logs" / f"{name}.jsonl").open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def configured(settings: Settings, url: str, **watch: object) -> Settings:
    prompts = {"triage": {"evaluators": {"label": {"labels": list(LABELS)}}, "expected_from": "expected",
                          "margin": 0.05, "watch": watch}}
    return hooked(settings, url, events=["watch.regressed"]).model_copy(update={"prompts": prompts})


def deployed(client: TestClient, engine, settings: Settings, headers) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """A suggestion approved and deployed to `staging` in the files store; its id and store version."""
    sid = make_suggestion(engine, synced(engine, settings))
    assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 200
    assert client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"]).status_code == 200
    with session_scope(engine) as session:
        s = session.get(Suggestion, sid)
        version = session.get(PromptVersion, s.candidate_version_id).external_version  # type: ignore[union-attr]
    return sid, version  # type: ignore[return-value]


def store_labels(folder: Path) -> dict[str, str]:
    path = folder / "prompts" / "triage" / "labels.yaml"
    if path.exists():
        return yaml.safe_load(path.read_text())
    return {"production": "1"}


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def old_traffic(store_dir: Path) -> Path:
    traffic(store_dir, "1", datetime.now(timezone.utc) - timedelta(days=3), 800, 0.95, "old")
    return store_dir


def test_a_regression_is_caught_within_bounded_items_alerted_and_rolled_back(
        engine, settings, headers, receiver, old_traffic, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    settings = configured(settings, receiver.url, on_regression="rollback")
    with TestClient(create_app(settings, engine)) as client:
        sid, version = deployed(client, engine, settings, headers)
        start = datetime.now(timezone.utc) + timedelta(seconds=1)
        seen = []
        for batch in range(8):  # the new version is right half the time; sync after every 25 calls
            traffic(old_traffic, version, start + timedelta(minutes=10 * batch), 25, 0.5, f"new{batch}",
                    first=batch * 25)
            outcome = services.sync(engine=engine, settings=settings, actor="test")
            [look] = outcome.watches or [None]
            if look is None:  # rolled back at the previous look: no longer watched
                break
            seen.append((look.verdict.value, look.action))
            if look.verdict == "regressed":
                break
        assert seen[-1] == ("regressed", "rolled_back")
        assert all(v != "regressed" for v, _ in seen[:-1])
        assert 25 * len(seen) <= 150  # caught within 150 items of a 45-point drop
        with session_scope(engine) as session:
            watch = session.exec(select(Watch).where(Watch.suggestion_id == sid)).one()
            assert watch.verdict == "regressed" and watch.action == "rolled_back" and watch.baseline_window == "pre_deploy"
            [check] = watch.checks
            assert check["signal"] == "label" and check["mode"] == "unpaired" and check["high"] < -0.05
            assert session.get(Suggestion, sid).status == "rolled_back"  # type: ignore[union-attr]
            actions = [a for a in session.exec(select(AuditEvent.action).order_by(col(AuditEvent.id))).all()
                       if a.startswith(("watch.", "suggestion.rollback"))]
        assert actions == ["watch.verdict", "suggestion.rollback", "watch.rolled_back"]
        assert store_labels(old_traffic)["production"] == "1"  # the files store points production back
        [(head, body)] = receiver.requests
        event = json.loads(body)
        assert head["X-Trimloop-Event"] == "watch.regressed" and event["data"]["suggestion_id"] == sid
        assert event["data"]["action"] == "rolled_back" and "label" in event["data"]["summary"]
        shown = client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()["watch"]
        assert shown["verdict"] == "regressed" and shown["action"] == "rolled_back"
        # another sync: the rolled-back suggestion is no longer watched, and nothing is sent again
        assert services.sync(engine=engine, settings=settings, actor="test").watches == []
        assert len(receiver.requests) == 1


def test_alert_policy_alerts_once_and_leaves_production_alone(engine, settings, headers, receiver, old_traffic,
                                                              monkeypatch):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    settings = configured(settings, receiver.url)  # on_regression defaults to alert
    with TestClient(create_app(settings, engine)) as client:
        sid, version = deployed(client, engine, settings, headers)
        client.post(f"/suggestions/{sid}/promote", headers=headers["engineer"])
        traffic(old_traffic, version, datetime.now(timezone.utc) + timedelta(seconds=1), 200, 0.4, "new")
        first = services.sync(engine=engine, settings=settings, actor="test").watches
        second = services.sync(engine=engine, settings=settings, actor="test").watches
    assert [(w.verdict.value, w.action) for w in first] == [("regressed", "alerted")]
    assert [(w.verdict.value, w.action) for w in second] == [("regressed", None)]
    assert len(receiver.requests) == 1
    assert store_labels(old_traffic)["production"] == version
    with session_scope(engine) as session:
        assert session.get(Suggestion, sid).status == "deployed"  # type: ignore[union-attr]


def test_a_version_that_holds_on_paired_shadow_scores_is_promoted_without_alert(
        engine, settings, headers, receiver, old_traffic, monkeypatch):
    """Shadow scoring re-runs the old version on live inputs through the real gateway (a fake provider
    answers like a model that gets them right), within the daily budget."""
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    settings = configured(settings, receiver.url, on_holding="promote", shadow_per_day=300)
    provider = FakeProvider(responder=lambda model, prompt: "billing" if "billing" in str(prompt) else "bug")
    with TestClient(create_app(settings, engine)) as client:
        sid, version = deployed(client, engine, settings, headers)
        traffic(old_traffic, version, datetime.now(timezone.utc) + timedelta(seconds=1), 400, 1.0, "new")
        [look] = services.sync(engine=engine, settings=settings, actor="test",
                               gateway_factory=lambda: Gateway(settings, engine=engine, provider=provider)).watches
    assert (look.verdict.value, look.action, look.error) == ("holding", "promoted", None)
    [check] = look.checks
    assert check["mode"] == "paired" and check["n_new"] == 300 and check["low"] > -0.05
    assert len(provider.calls) == 300  # the day's shadow budget, no more
    with session_scope(engine) as session:
        assert len(session.exec(select(ShadowScore)).all()) == 300
    assert store_labels(old_traffic)["production"] == version
    assert receiver.requests == []


def test_a_bad_watch_policy_is_named_and_does_not_stop_the_sync(engine, settings, headers, old_traffic):
    bad = settings.model_copy(update={"prompts": {"triage": {"watch": {"on_regression": "explode"}}}})
    with pytest.raises(ConfigError) as caught:
        check_run_config(bad, "triage")
    assert "watch.on_regression" in caught.value.where and "rollback" in caught.value.message
    with TestClient(create_app(bad, engine)) as client:
        deployed(client, engine, bad, headers)
        [look] = services.sync(engine=engine, settings=bad, actor="test").watches
    assert look.verdict == "inconclusive" and "on_regression" in (look.error or "")


def test_trimloop_sync_prints_each_watch_with_its_numbers():
    import io

    from rich.console import Console

    from trimloop.api.cli.sync import print_watches
    from trimloop.api.watch import WatchOutcome
    from trimloop.core.status import WatchVerdict

    out = io.StringIO()
    check = {"signal": "label", "mode": "unpaired", "n_new": 75, "n_old": 800, "mean_new": 0.5, "mean_old": 0.95,
             "low": -0.61, "high": -0.29, "margin": 0.05, "verdict": "regressed"}
    print_watches([WatchOutcome(7, WatchVerdict.regressed, True, action="rolled_back", checks=[check]),
                   WatchOutcome(8, WatchVerdict.inconclusive, False, error="invalid watch policy: …")],
                  Console(file=out, width=200))
    lines = out.getvalue().splitlines()
    assert lines[0] == ("watch suggestion 7: regressed — label: new 0.500 vs old 0.950, new − old in [-0.610, -0.290] "
                        "(n 75/800, unpaired); rolled back")
    assert lines[1] == "watch suggestion 8: inconclusive invalid watch policy: …"


def test_while_both_versions_serve_the_old_ones_concurrent_traffic_is_the_comparison(
        engine, settings, headers, receiver, old_traffic, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    settings = configured(settings, receiver.url)
    with TestClient(create_app(settings, engine)) as client:
        sid, version = deployed(client, engine, settings, headers)  # staging takes a share; production stays on 1
        start = datetime.now(timezone.utc) + timedelta(seconds=1)
        traffic(old_traffic, "1", start, 300, 0.5, "old-now")  # the old version, same period, now worse
        traffic(old_traffic, version, start, 300, 0.95, "new")
        [look] = services.sync(engine=engine, settings=settings, actor="test").watches
    with session_scope(engine) as session:
        watch = session.exec(select(Watch).where(Watch.suggestion_id == sid)).one()
    assert watch.baseline_window == "concurrent" and (watch.n_new, watch.n_old) == (300, 300)
    assert look.verdict == "holding" and receiver.requests == []  # judged against the same period, not before
