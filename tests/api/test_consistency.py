"""Consistency: concurrent approvals (one wins, one 409) on either backend, idempotent
steps, superseded suggestions, required reasons."""

import threading

import yaml

from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.errors import Conflict

from tests.api.conftest import make_suggestion, synced


def race_approvals(engine, suggestion_id, reviewers):
    barrier = threading.Barrier(len(reviewers))
    outcomes: dict[str, str] = {}

    def approve(reviewer):
        barrier.wait()
        try:
            with session_scope(engine) as session:
                store.approve_suggestion(session=session, suggestion_id=suggestion_id, reviewer=reviewer)
            outcomes[reviewer] = "approved"
        except Conflict:
            outcomes[reviewer] = "conflict"

    threads = [threading.Thread(target=approve, args=(r,)) for r in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def check_exactly_one_wins(engine, settings):
    prompt_id = synced(engine, settings)
    for round_ in range(5):
        sid = make_suggestion(engine, prompt_id, savings=10.0 + round_)
        outcomes = race_approvals(engine, sid, ["ana", "bo", "cy"])
        assert sorted(outcomes.values()) == ["approved", "conflict", "conflict"], outcomes
        with session_scope(engine) as session:
            events = [e for e in store.list_suggestions(session=session, status="approved") if e.id == sid]
            assert len(events) == 1
            from sqlmodel import select

            from trimloop.core.tables import AuditEvent, Review
            reviews = session.exec(select(Review).where(Review.suggestion_id == sid)).all()
            audits = session.exec(select(AuditEvent).where(AuditEvent.object_id == str(sid),
                                                           AuditEvent.action == "suggestion.approve")).all()
            assert len(reviews) == 1 and len(audits) == 1
            assert reviews[0].reviewer == next(r for r, o in outcomes.items() if o == "approved")


def test_concurrent_approvals_one_wins(engine, settings):  # SQLite, and PostgreSQL in its pass
    check_exactly_one_wins(engine, settings)


def test_second_reviewer_gets_409_and_the_first_can_repeat(client, headers, engine, settings, tmp_path):
    prompt_id = synced(engine, settings)
    sid = make_suggestion(engine, prompt_id)
    assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 200
    assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 200
    other = client.post(f"/suggestions/{sid}/approve", headers=headers["admin"])
    assert other.status_code == 409
    assert set(other.json()["error"]) == {"code", "message", "where", "hint"}
    assert other.json()["error"]["code"] == "conflict"
    audit = client.get("/audit", params={"object_type": "suggestion", "object_id": str(sid)},
                       headers=headers["viewer"]).json()
    assert len(audit) == 1
    assert audit[-1]["before"] == {"status": "pending"} and audit[-1]["after"] == {"status": "approved"}
    assert audit[-1]["actor"] == "reviewer-1 (reviewer)"


def test_reject_needs_a_reason_and_records_it(client, headers, engine, settings):
    sid = make_suggestion(engine, synced(engine, settings))
    missing = client.post(f"/suggestions/{sid}/reject", json={}, headers=headers["reviewer"])
    assert missing.status_code == 422 and "reason" in missing.json()["error"]["where"]
    blank = client.post(f"/suggestions/{sid}/reject", json={"reason": "   "}, headers=headers["reviewer"])
    assert blank.status_code == 400 and blank.json()["error"]["where"] == "reason"
    done = client.post(f"/suggestions/{sid}/reject", json={"reason": "loses the order id"}, headers=headers["reviewer"])
    assert done.json()["status"] == "rejected" and done.json()["reason"] == "loses the order id"
    assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 409
    assert client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"]).status_code == 409


def test_suggestion_against_an_old_baseline_is_superseded(client, headers, engine, settings, store_dir):
    prompt_id = synced(engine, settings)
    stale = make_suggestion(engine, prompt_id, savings=50.0)
    fresh = make_suggestion(engine, prompt_id, savings=80.0)
    # someone moves production in the store by hand (version 2), and trimloop syncs
    folder = store_dir / "prompts" / "triage"
    (folder / "2.md").write_text((folder / "1.md").read_text().replace("exactly one word only", "one word"))
    (folder / "labels.yaml").write_text(yaml.safe_dump({"production": "2"}))
    report = client.post("/connectors/sync", json={}, headers=headers["engineer"])
    assert report.status_code == 200 and sorted(report.json()[0]["superseded"]) == sorted([stale, fresh])
    listed = client.get("/suggestions", params={"status": "superseded"}, headers=headers["viewer"]).json()
    assert {s["id"] for s in listed} == {stale, fresh}
    assert client.post(f"/suggestions/{stale}/approve", headers=headers["reviewer"]).status_code == 409


def test_approve_notices_a_moved_baseline_without_a_sync_route(client, headers, engine, settings, store_dir):
    prompt_id = synced(engine, settings)
    sid = make_suggestion(engine, prompt_id)
    folder = store_dir / "prompts" / "triage"
    (folder / "2.md").write_text((folder / "1.md").read_text().replace("exactly one word only", "one word"))
    (folder / "labels.yaml").write_text(yaml.safe_dump({"production": "2"}))
    synced(engine, settings)  # the scheduler's sync, outside the API
    reply = client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"])
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "superseded"
    assert client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()["status"] == "superseded"
