"""Model retirements in the API, the pages, the notifications and `trimloop models list`, with the
clock set: the files store's `triage` prompt runs on `big/model`, which settings retire on
2026-12-11 (`retires_on`)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from typer.testing import CliRunner

from trimloop.api import webhooks
from trimloop.api.app import create_app
from trimloop.api.cli import _register, app as cli_app
from trimloop.api.scheduler import Worker
from trimloop.core.db import session_scope
from trimloop.core.settings import ModelConfig
from trimloop.core.tables import Notification

from tests.api.conftest import make_suggestion, synced
from tests.api.test_webhooks import SECRET, Receiver, hooked
from tests.ui.conftest import sign_in

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
DEADLINE = date(2026, 12, 11)


@pytest.fixture
def retiring(settings):
    """The test settings with `big/model` (the production model of `triage`) retiring on DEADLINE."""
    return settings.model_copy(update={"models": {"big/model": ModelConfig(retires_on=DEADLINE)}})


def test_the_queue_lists_migrations_first_and_flags_the_deadline(retiring, engine, headers):
    prompt_id = synced(engine, retiring)
    big = make_suggestion(engine, prompt_id, savings=900.0)
    migration = make_suggestion(engine, prompt_id, savings=5.0, retires_on=DEADLINE)
    with TestClient(create_app(retiring, engine, clock=lambda: NOW), follow_redirects=False) as client:
        queue = client.get("/suggestions", params={"status": "pending"}, headers=headers["viewer"]).json()
        assert [s["id"] for s in queue] == [migration, big]
        assert queue[0]["retires_on"] == "2026-12-11" and queue[1]["retires_on"] is None
        report = client.get("/reports/savings", headers=headers["viewer"]).json()
        assert [r["suggestion_id"] for r in report["projected"]] == [migration, big]
        assert report["projected"][0]["retires_on"] == "2026-12-11"
        csv = client.get("/reports/savings", params={"format": "csv"}, headers=headers["viewer"]).text
        assert "retires_on" in csv.splitlines()[0] and "2026-12-11" in csv
        sign_in(client, headers["viewer"]["Authorization"].split()[1])
        page = client.get("/ui/").text
        flag = "model retires 2026-12-11 (in 10 days): migrate before then"
        assert flag in page and page.index(f"#{migration}<") < page.index(f"#{big}<")
        assert page.index(flag) < page.index(f"#{big}<")  # on the migration's card, not the other one
        dashboard = client.get("/ui/dashboard").text
        assert flag in dashboard and dashboard.index(f">#{migration}<") < dashboard.index(f">#{big}<")
        assert flag in client.get(f"/ui/suggestions/{migration}").text
        assert "model retires" not in client.get(f"/ui/suggestions/{big}").text


async def test_model_retiring_notices_go_out_at_60_30_and_7_days_each_once(retiring, engine, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    receiver = Receiver()
    try:
        settings = hooked(retiring, receiver.url, events=["model.retiring"])
        prompt_id = synced(engine, settings)

        async def on(day: date) -> list[int]:
            now = datetime(day.year, day.month, day.day, 8, tzinfo=timezone.utc)
            return [n["threshold_days"] for n in
                    await webhooks.announce_retirements(engine=engine, settings=settings, now=now)]

        unhooked = await webhooks.announce_retirements(engine=engine, settings=retiring, now=NOW)
        assert unhooked == []  # no webhook wants it: nothing is sent, and nothing recorded as sent
        assert await on(date(2026, 10, 1)) == []  # 71 days out: nothing yet
        assert await on(date(2026, 10, 12)) == [60]  # 60 days out
        assert await on(date(2026, 10, 12)) == [] and await on(date(2026, 10, 30)) == []
        assert await on(date(2026, 11, 11)) == [30]
        assert await on(date(2026, 11, 20)) == []
        assert await on(date(2026, 12, 4)) == [7]
        assert await on(date(2026, 12, 5)) == [] and await on(date(2026, 12, 12)) == []  # even once retired
        assert len(receiver.requests) == 3
        events = [json.loads(body) for _, body in receiver.requests]
        assert [e["event"] for e in events] == ["model.retiring"] * 3
        assert [e["data"]["days_left"] for e in events] == [60, 30, 7]
        first = events[0]["data"]
        assert first["prompt_id"] == prompt_id and first["model"] == "big/model" and first["retires_on"] == "2026-12-11"
        assert first["summary"].startswith("triage: big/model retires on 2026-12-11 (in 60 days)")
        assert events[0]["link"].endswith(f"/prompts/{prompt_id}")
        head, body = receiver.requests[0]
        assert webhooks.verify(SECRET, head["X-Trimloop-Timestamp"], body, head["X-Trimloop-Signature"])
        with session_scope(engine) as session:
            sent = session.exec(select(Notification).order_by(Notification.id)).all()
        assert [n.key.rsplit(":", 1)[1] for n in sent] == ["60", "30", "7"] and all(n.delivered for n in sent)
    finally:
        receiver.close()


async def test_a_date_learnt_late_sends_one_notice_and_slack_gets_text_and_blocks(retiring, engine, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    receiver = Receiver()
    try:
        settings = hooked(retiring, receiver.url, format="slack")  # every event, model.retiring among them
        synced(engine, settings)
        # the scheduler's pass sends what is due on its clock
        report = await Worker(engine=engine, settings=settings, gateway=None, clock=lambda: NOW).run_pass(
            do_sync=False, max_runs=0)
        assert report.notified == ["triage: big/model retires on 2026-12-11 (in 10 days); trimloop is looking for "
                                   "a replacement model (the prompt is due first)"]
        assert report.to_dict()["decisions"][0]["code"] == "model_retiring"
        sent = await webhooks.announce_retirements(engine=engine, settings=settings, now=NOW)
        assert sent == []  # the pass sent it already
        with session_scope(engine) as session:
            [notice] = session.exec(select(Notification)).all()
        assert notice.data["threshold_days"] == 30  # 10 days left: the 30-day notice, not 60 and 30
        [(_, body)] = receiver.requests
        slack = json.loads(body)
        assert slack["text"].startswith("trimloop: model retiring: triage: big/model retires on 2026-12-11 (in 10 days)")
        assert slack["blocks"][0]["text"]["text"].startswith("*model.retiring*")
    finally:
        receiver.close()


def test_models_list_shows_retirement_dates(tmp_path, monkeypatch):
    config = tmp_path / "trimloop.toml"
    config.write_text('[models."gpt-5-mini"]\n\n[models."big/model"]\nretires_on = "2027-03-01"\n')
    monkeypatch.setenv("TRIMLOOP_CONFIG", str(config))
    monkeypatch.setenv("COLUMNS", "250")
    _register()
    result = CliRunner().invoke(cli_app, ["models", "list", "--today", "2026-12-01", "--model", "gpt-4o-mini"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "2026-12-11 (in 10 days, retiring; litellm price map)" in rows["gpt-5-mini"]
    assert "2027-01-14 (in 44 days, retiring; litellm price map)" in rows["gpt-4o-mini"]
    assert "2027-03-01 (in 90 days; settings)" in rows["big/model"]
    assert "—" in rows["local/smollm2-135m"]
    bad = CliRunner().invoke(cli_app, ["models", "list", "--model", "local/nope"])
    assert bad.exit_code == 2 and "unknown local model" in bad.output


async def test_a_notice_a_webhook_did_not_take_is_sent_again_by_a_later_pass_to_that_webhook_only(
        retiring, engine, monkeypatch):
    """Before, a receiver down for the pass that sent the 30-day notice never got it: the row was
    marked undelivered and no pass looked at it again."""
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    down, up = Receiver(fail_first=10**6), Receiver()
    try:
        settings = hooked(retiring, down.url, events=["model.retiring"], max_retries=1)
        settings = settings.model_copy(update={"webhooks": [*settings.webhooks, *hooked(
            retiring, up.url, events=["model.retiring"]).webhooks]})
        synced(engine, settings)

        async def at(minutes: int) -> list[int]:
            now = NOW + timedelta(minutes=minutes)
            return [n["threshold_days"] for n in
                    await webhooks.announce_retirements(engine=engine, settings=settings, now=now)]

        assert await at(0) == [30]
        assert (len(down.requests), len(up.requests)) == (2, 1)  # two attempts at the one that is down
        assert await at(1) == []  # too soon for another pass at it
        down.fail_first = 0  # the receiver is back
        assert await at(6) == [30]
        assert (len(down.requests), len(up.requests)) == (3, 1)  # the one that had it is not sent it twice
        assert await at(20) == []  # delivered: never again
        with session_scope(engine) as session:
            [notice] = session.exec(select(Notification)).all()
        assert notice.delivered and notice.attempts == 2 and notice.failed_hooks == []
        assert json.loads(down.requests[-1][1])["data"]["threshold_days"] == 30
    finally:
        down.close()
        up.close()


async def test_a_webhook_that_stays_down_is_tried_a_bounded_number_of_passes(retiring, engine, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    down = Receiver(fail_first=10**6)
    try:
        settings = hooked(retiring, down.url, events=["model.retiring"], max_retries=0)
        synced(engine, settings)
        sent = [await webhooks.announce_retirements(engine=engine, settings=settings,
                                                    now=NOW + timedelta(hours=hour)) for hour in range(12)]
        assert sum(len(s) for s in sent) == webhooks.NOTICE_ATTEMPTS == len(down.requests)
        with session_scope(engine) as session:
            [notice] = session.exec(select(Notification)).all()
        assert not notice.delivered and len(notice.failed_hooks) == 1 and notice.attempts == webhooks.NOTICE_ATTEMPTS
    finally:
        down.close()
