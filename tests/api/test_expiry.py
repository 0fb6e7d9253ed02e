"""`expired`: a suggestion left pending longer than scheduler.expire_pending_after_days expires when
the scheduler's pass or a sync notices; the prompt can then be optimized again. The pass also
supersedes suggestions whose baseline left production (before, only the API's sync did)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import select

from tests.api.conftest import make_suggestion, synced
from trimloop.api.app import create_app
from trimloop.api.scheduler import Worker
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.settings import Settings
from trimloop.core.tables import AuditEvent, Suggestion

NOW = datetime.now(timezone.utc)


def status(engine: Engine, suggestion_id: int) -> str:
    with session_scope(engine) as session:
        suggestion = session.get(Suggestion, suggestion_id)
        assert suggestion is not None
        return suggestion.status


def test_only_old_pending_suggestions_expire(engine: Engine, settings: Settings) -> None:
    prompt_id = synced(engine, settings)
    old = make_suggestion(engine, prompt_id, savings=10.0, created_at=NOW - timedelta(days=31))
    young = make_suggestion(engine, prompt_id, savings=20.0, created_at=NOW - timedelta(days=29))
    approved = make_suggestion(engine, prompt_id, savings=30.0, created_at=NOW - timedelta(days=90), status="approved")
    with session_scope(engine) as session:
        assert store.expire_stale(session=session, now=NOW, max_age=timedelta(days=30), actor="test") == [old]
    with session_scope(engine) as session:
        assert store.expire_stale(session=session, now=NOW, max_age=timedelta(days=30), actor="test") == []
        expired = session.get(Suggestion, old)
        assert expired is not None and expired.decided_at is not None
        assert expired.reason == "pending for more than 30 days without a decision"
        [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "suggestion.expire")).all()
        assert event.object_id == str(old) and event.before == {"status": "pending"}
        assert event.after["status"] == "expired" and event.actor == "test"
    assert (status(engine, young), status(engine, approved)) == ("pending", "approved")


def test_sync_route_expires_and_an_expired_suggestion_cannot_be_approved(
        engine: Engine, settings: Settings, headers: dict[str, dict[str, str]]) -> None:
    prompt_id = synced(engine, settings)
    old = make_suggestion(engine, prompt_id, created_at=NOW - timedelta(days=3))
    short = settings.model_copy(update={"scheduler": settings.scheduler.model_copy(
        update={"expire_pending_after_days": 2.0})})
    with TestClient(create_app(short, engine)) as client:
        before = client.get("/suggestions", params={"status": "pending"}, headers=headers["viewer"]).json()
        assert [s["id"] for s in before] == [old]
        report = client.post("/connectors/sync", json={}, headers=headers["engineer"])
        assert report.status_code == 200 and report.json()[0]["expired"] == [old]
        listed = client.get("/suggestions", params={"status": "expired"}, headers=headers["viewer"]).json()
        assert [s["id"] for s in listed] == [old]
        reply = client.post(f"/suggestions/{old}/approve", headers=headers["reviewer"])
        assert reply.status_code == 409 and "is expired" in reply.json()["error"]["message"]
        audit = client.get("/audit", headers=headers["admin"]).json()
    assert any(e["action"] == "suggestion.expire" and e["actor"].startswith("engineer-1") for e in audit), audit


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_the_scheduler_pass_expires_and_the_prompt_is_due_again(engine: Engine, settings: Settings) -> None:
    prompt_id = synced(engine, settings)
    sid = make_suggestion(engine, prompt_id, created_at=NOW - timedelta(days=10))
    clock = Clock(NOW)
    worker = Worker(engine=engine, settings=settings, gateway=object(), clock=clock, name="w1")
    first = asyncio.run(worker.run_pass(do_sync=False, max_runs=0))
    assert first.expired == [] and first.decisions[0].reason == f"suggestion {sid} is pending review"
    assert not first.decisions[0].due and first.queued == []
    clock.now = NOW + timedelta(days=21)  # 31 days after it was made, past the default 30
    second = asyncio.run(worker.run_pass(do_sync=False, max_runs=0))
    assert second.expired == [sid] and second.to_dict()["expired"] == [sid]
    assert status(engine, sid) == "expired"
    assert second.decisions[0].due and len(second.queued) == 1, second.decisions


def test_the_scheduler_pass_supersedes_after_its_own_sync(engine: Engine, settings: Settings, store_dir: Path) -> None:
    prompt_id = synced(engine, settings)
    sid = make_suggestion(engine, prompt_id)
    folder = store_dir / "prompts" / "triage"
    (folder / "2.md").write_text((folder / "1.md").read_text().replace("exactly one word only", "one word"))
    (folder / "labels.yaml").write_text(yaml.safe_dump({"production": "2"}))
    worker = Worker(engine=engine, settings=settings, gateway=object(), clock=Clock(NOW), name="w1")
    report = asyncio.run(worker.run_pass(max_runs=0))
    assert report.superseded == [sid] and status(engine, sid) == "superseded"
    assert "pending review" not in report.decisions[0].reason
