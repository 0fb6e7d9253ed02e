"""Web UI sessions live in the database: shared by every server process, kept across restarts,
stored only as a digest of their id, swept when they expire."""

from __future__ import annotations

import hashlib
import json

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tests.ui.conftest import csrf_of, sign_in
from trimloop.api.app import create_app
from trimloop.api.ui import sessions
from trimloop.core.settings import Settings
from trimloop.core.tables import UiSession


def test_a_session_is_known_to_another_process_and_after_a_restart(tmp_path, engine, seeded, app_client):
    sign_in(app_client, seeded["tokens"]["reviewer"])
    cookie = app_client.cookies.get(sessions.COOKIE)
    sid = seeded["triage"][0]
    csrf = csrf_of(app_client.get(f"/ui/suggestions/{sid}").text)
    # a second server on the same database (another process, or this one restarted)
    other = create_app(Settings(home=tmp_path / "other"), engine)
    with TestClient(other, follow_redirects=False, cookies={sessions.COOKIE: cookie}) as second:
        assert second.get("/ui/").status_code == 200
        # a form rendered by the first server is accepted by the second, and its message travels back
        assert second.post(f"/ui/suggestions/{sid}/approve", data={"csrf": csrf}).status_code == 303
    page = app_client.get("/ui/").text
    assert f"Suggestion {sid} approved." in page
    assert f"Suggestion {sid} approved." not in app_client.get("/ui/").text  # shown once


def test_the_table_holds_a_digest_of_the_id_never_the_id(engine, seeded, app_client):
    sign_in(app_client, seeded["tokens"]["viewer"])
    cookie = app_client.cookies.get(sessions.COOKIE)
    with Session(engine) as db:
        rows = db.exec(select(UiSession)).all()
    assert hashlib.sha256(cookie.encode()).hexdigest() in {r.digest for r in rows}
    assert cookie not in json.dumps([r.model_dump(mode="json") for r in rows])
    signed = [r for r in rows if r.token_id is not None]
    assert [r.role for r in signed] == ["viewer"]


def test_sign_out_and_expiry_remove_the_row(engine, seeded, app_client, monkeypatch):
    sign_in(app_client, seeded["tokens"]["viewer"])
    page = app_client.get("/ui/").text
    assert app_client.post("/ui/logout", data={"csrf": csrf_of(page)}).status_code == 303
    with Session(engine) as db:
        assert [r for r in db.exec(select(UiSession)).all() if r.token_id is not None] == []
    # expired rows and anonymous ones beyond the cap go at the next sweep
    monkeypatch.setattr(sessions, "SWEEP_EVERY_S", 0.0)
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 3)
    store = sessions.SessionStore(engine)
    stale = store.anonymous()
    with Session(engine) as db:
        row = db.get(UiSession, hashlib.sha256(stale.sid.encode()).hexdigest())
        row.expires_at = row.expires_at.replace(year=2000)
        db.add(row)
        db.commit()
    assert store.get(stale.sid) is None  # expired: refused (and deleted) even before a sweep
    made = [store.anonymous() for _ in range(6)]
    with Session(engine) as db:
        left = db.exec(select(UiSession.digest)).all()
    assert len(left) <= 3 + 1  # the cap, plus the one made after the last sweep
    assert store.get(made[-1].sid) is not None and store.get(made[0].sid) is None  # oldest first
    assert store.get("x" * 500) is None and store.get("") is None


def test_sign_out_without_the_csrf_field_still_ends_the_server_session(tmp_path, engine, seeded, app_client):
    sign_in(app_client, seeded["tokens"]["viewer"])
    cookie = app_client.cookies.get(sessions.COOKIE)
    assert app_client.post("/ui/logout", data={}).status_code == 303
    with TestClient(create_app(Settings(home=tmp_path / "other"), engine), follow_redirects=False,
                    cookies={sessions.COOKIE: cookie}) as kept:  # someone who copied the cookie before
        assert kept.get("/ui/").status_code == 303  # to the sign-in page: the session is gone
    with Session(engine) as db:
        assert [r for r in db.exec(select(UiSession)).all() if r.token_id is not None] == []
