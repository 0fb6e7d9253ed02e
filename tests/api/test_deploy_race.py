"""Concurrent deploy / promote / rollback of one suggestion (a double-click, two engineers): one
request claims the suggestion and writes through the connector, the others get 409; one version
file, one Deployment row, one webhook. A failed write releases the claim."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import select

from trimloop.api.app import create_app
from trimloop.connectors.files import FilesConnector
from trimloop.core.db import session_scope
from trimloop.core.tables import AuditEvent, Deployment

from tests.api.conftest import make_suggestion, synced
from tests.api.test_webhooks import SECRET, Receiver, hooked

N = 10


@pytest.fixture
def slow_store(monkeypatch):
    """The files connector, holding each write for a moment (a remote store's round trip), so
    concurrent requests overlap; counts the writes that reached it."""
    calls = {"write_version": 0, "move_label": 0}
    lock = threading.Lock()

    def slowed(name):
        real = getattr(FilesConnector, name)

        def wrapper(self, **kw):
            with lock:
                calls[name] += 1
            time.sleep(0.2)
            return real(self, **kw)
        monkeypatch.setattr(FilesConnector, name, wrapper)
    slowed("write_version")
    slowed("move_label")
    return calls


def race(client, path, headers):
    barrier = threading.Barrier(N)

    def one(_):
        barrier.wait()
        return client.post(path, headers=headers)
    with ThreadPoolExecutor(N) as pool:
        return list(pool.map(one, range(N)))


def rows(engine, sid, action):
    with session_scope(engine) as session:
        return session.exec(select(Deployment).where(Deployment.suggestion_id == sid,
                                                     Deployment.action == action)).all()


def test_concurrent_deploy_promote_rollback_write_once(settings, engine, headers, store_dir, slow_store,
                                                       monkeypatch):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    receiver = Receiver()
    try:
        settings = hooked(settings, receiver.url, events=["suggestion.deployed"])
        sid = make_suggestion(engine, synced(engine, settings))
        with TestClient(create_app(settings, engine)) as client:
            assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 200
            folder = store_dir / "prompts" / "triage"
            for action, label in (("deploy", "staging"), ("promote", "production"), ("rollback", "production")):
                replies = race(client, f"/suggestions/{sid}/{action}", headers["engineer"])
                codes = sorted(r.status_code for r in replies)
                assert codes.count(200) == 1 and codes.count(409) == N - 1, (action, codes)
                lost = next(r for r in replies if r.status_code == 409).json()["error"]
                assert lost["code"] == "conflict" and lost["where"] == f"suggestion {sid}", lost
                [done] = rows(engine, sid, action)
                assert done.status == "done" and done.label == label
                # a later repeat is idempotent for deploy and promote, and writes nothing
                if action != "rollback":
                    again = client.post(f"/suggestions/{sid}/{action}", headers=headers["engineer"])
                    assert again.status_code == 200 and again.json()["id"] == done.id
            assert slow_store == {"write_version": 1, "move_label": 3}  # staging (inside the write), production twice
            assert sorted(p.name for p in folder.glob("*.md")) == ["1.md", "2.md"]  # one new version file
            assert yaml.safe_load((folder / "labels.yaml").read_text()) == {"production": "1", "staging": "2"}
            status = client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()["status"]
            assert status == "rolled_back"
            with session_scope(engine) as session:
                audit = session.exec(select(AuditEvent.action).where(AuditEvent.object_type == "suggestion",
                                                          AuditEvent.object_id == str(sid))).all()
            assert sorted(audit) == ["suggestion.approve", "suggestion.deploy", "suggestion.promote",
                                     "suggestion.rollback"]
        assert len(receiver.requests) == 1  # one suggestion.deployed, not one per request
    finally:
        receiver.close()


def test_a_failed_write_releases_the_claim(client, headers, engine, settings, store_dir, monkeypatch):
    sid = make_suggestion(engine, synced(engine, settings))
    assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 200
    real = FilesConnector.write_version

    def refuse(self, **kw):
        raise OSError("disk full")
    monkeypatch.setattr(FilesConnector, "write_version", refuse)
    with pytest.raises(OSError):
        client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"])
    [failed] = rows(engine, sid, "deploy")
    assert failed.status == "failed" and failed.error == "OSError: disk full"
    assert client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()["status"] == "approved"
    monkeypatch.setattr(FilesConnector, "write_version", real)
    reply = client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"])
    assert reply.status_code == 200 and reply.json()["status"] == "done"
    assert client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()["status"] == "deployed"


def test_a_claim_whose_writer_died_is_taken_over_after_a_while(client, headers, engine, settings):
    from datetime import timedelta

    from sqlalchemy import update

    from trimloop.core.tables import Suggestion, utcnow
    sid = make_suggestion(engine, synced(engine, settings))
    assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 200
    with session_scope(engine) as session:  # what a process killed mid-write leaves behind
        session.execute(update(Suggestion).where(Suggestion.id == sid).values(status="deploying"))
        session.add(Deployment(suggestion_id=sid, connector="local", label="staging", action="deploy",
                               status="writing", actor="gone", created_at=utcnow() - timedelta(minutes=2)))
    busy = client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"])
    assert busy.status_code == 409 and "another request" in busy.json()["error"]["message"]
    with session_scope(engine) as session:
        session.execute(update(Deployment).where(Deployment.suggestion_id == sid)
                        .values(created_at=utcnow() - timedelta(hours=1)))
    released = client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"])
    assert released.status_code == 409 and "never finished" in released.json()["error"]["message"]
    assert client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()["status"] == "approved"
    assert client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"]).status_code == 200
    assert sorted(d.status for d in rows(engine, sid, "deploy")) == ["abandoned", "done"]


def test_a_claim_after_the_status_moved_on_is_a_conflict_naming_both_ends(client, headers, engine, settings):
    """A request that planned a deploy while the suggestion was approved, and claims after another
    request finished it, is refused with the two statuses named (it was an AttributeError)."""
    from trimloop.core import store
    from trimloop.core.errors import Conflict
    sid = make_suggestion(engine, synced(engine, settings))
    assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 200
    assert client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"]).status_code == 200
    with session_scope(engine) as session:  # the late request's claim, after the first one finished
        plan = store.plan_deploy(session=session, suggestion_id=sid, actor="late")
        with pytest.raises(Conflict) as refused:
            store.claim_write(session=session, plan=plan, action="deploy", label="staging", actor="late")
    assert "deployed → deploying is not allowed" in str(refused.value)
