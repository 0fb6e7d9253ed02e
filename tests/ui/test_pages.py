"""The UI without a browser: sign-in, CSRF, role-dependent controls, escaping, every page renders."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.ui.conftest import csrf_of, sign_in
from tests.ui.seed import HOSTILE


def test_pages_need_a_session_and_root_redirects(app_client: TestClient) -> None:
    assert app_client.get("/").headers["location"] == "/ui/"
    assert app_client.get("/ui").headers["location"] == "/ui/"
    for path in ("/ui/", "/ui/dashboard", "/ui/runs", "/ui/suggestions/1", "/ui/dashboard.csv"):
        response = app_client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/ui/login?next=")


def test_login_cookie_is_httponly_strict_and_holds_no_token(app_client: TestClient, seeded: dict) -> None:
    token = seeded["tokens"]["reviewer"]
    page = app_client.get("/ui/login")
    response = app_client.post("/ui/login", data={"csrf": csrf_of(page.text), "token": token, "next": "/ui"})
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and token not in cookie
    queue = app_client.get("/ui/")
    assert queue.status_code == 200 and token not in queue.text
    assert "Content-Security-Policy" in queue.headers


def test_wrong_token_and_missing_csrf_are_refused(app_client: TestClient, seeded: dict) -> None:
    page = app_client.get("/ui/login")
    bad = app_client.post("/ui/login", data={"csrf": csrf_of(page.text), "token": "nope"})
    assert bad.status_code == 401 and "Unknown, revoked or expired token" in bad.text
    forged = app_client.post("/ui/login", data={"csrf": "forged", "token": seeded["tokens"]["admin"]})
    assert forged.status_code == 403 and app_client.get("/ui/").status_code == 303


def test_decisions_need_the_session_csrf_token(app_client: TestClient, seeded: dict) -> None:
    sign_in(app_client, seeded["tokens"]["reviewer"])
    sid = seeded["triage"][0]
    response = app_client.post(f"/ui/suggestions/{sid}/approve", data={"csrf": "wrong"})
    assert response.status_code == 303
    page = app_client.get(f"/ui/suggestions/{sid}")
    assert "The form expired" in page.text and "status-pending" in page.text


def test_reject_needs_a_reason_and_approve_works(app_client: TestClient, seeded: dict) -> None:
    sign_in(app_client, seeded["tokens"]["reviewer"])
    first, second = seeded["triage"][:2]
    csrf = csrf_of(app_client.get(f"/ui/suggestions/{first}").text)
    app_client.post(f"/ui/suggestions/{first}/reject", data={"csrf": csrf, "reason": "  "})
    assert "needs a reason" in app_client.get(f"/ui/suggestions/{first}").text
    app_client.post(f"/ui/suggestions/{first}/reject", data={"csrf": csrf, "reason": "drops <the> order id"})
    page = app_client.get(f"/ui/suggestions/{first}").text
    assert "status-rejected" in page and "drops &lt;the&gt; order id" in page
    app_client.post(f"/ui/suggestions/{second}/approve", data={"csrf": csrf})
    assert "status-approved" in app_client.get(f"/ui/suggestions/{second}").text


def test_controls_follow_the_role(app_client: TestClient, seeded: dict) -> None:
    sid = seeded["triage"][0]
    sign_in(app_client, seeded["tokens"]["viewer"])
    page = app_client.get(f"/ui/suggestions/{sid}").text
    assert "Approve</button>" not in page and "Reject</button>" not in page
    csrf = csrf_of(page)
    app_client.post(f"/ui/suggestions/{sid}/approve", data={"csrf": csrf})
    assert "may not approve" in app_client.get(f"/ui/suggestions/{sid}").text
    app_client.post("/ui/logout", data={"csrf": csrf})
    assert app_client.get("/ui/").status_code == 303
    sign_in(app_client, seeded["tokens"]["engineer"])
    page = app_client.get(f"/ui/suggestions/{sid}").text
    assert "Approve</button>" not in page and "Deploy" not in page  # pending: nothing to deploy yet


def test_hostile_prompt_name_is_escaped_everywhere(app_client: TestClient, seeded: dict) -> None:
    sign_in(app_client, seeded["tokens"]["viewer"])
    for path in ("/ui/", f"/ui/suggestions/{seeded['hostile']}", "/ui/dashboard"):
        html = app_client.get(path).text
        assert "<script>alert" not in html and "&lt;script&gt;alert" in html, path
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; {{7*7}}" in html, path


def test_dashboard_runs_and_csv_render(app_client: TestClient, seeded: dict) -> None:
    sign_in(app_client, seeded["tokens"]["viewer"])
    dash = app_client.get("/ui/dashboard", params={"start": "2000-01-01", "end": "bad"})
    assert dash.status_code == 200 and "<svg" in dash.text and "billing-triage" in dash.text
    csv = app_client.get("/ui/dashboard.csv")
    assert csv.headers["content-type"].startswith("text/csv") and "projected," in csv.text
    assert app_client.get("/ui/runs").status_code == 200
    assert app_client.get("/ui/runs/999").status_code == 404
    assert app_client.get("/ui/suggestions/999").status_code == 404
    assert app_client.get("/ui/static/app.css").status_code == 200
    assert HOSTILE not in app_client.get("/ui/runs").text


def test_a_suggestion_whose_evidence_lacks_latency_figures_renders(app_client: TestClient, seeded: dict,
                                                                    engine) -> None:
    """Evidence written before p95 latencies were recorded (or imported) shows "—", not a 500."""
    from sqlalchemy import JSON, column, select, table, update

    from trimloop.core.db import session_scope

    sid = seeded["triage"][0]
    raw = table("suggestion", column("id"), column("evidence", JSON))  # as an older row: plain JSON, unvalidated
    with session_scope(engine) as session:
        old = session.execute(select(raw.c.evidence).where(raw.c.id == sid)).scalar_one()
        old["savings"] = {k: v for k, v in old["savings"].items() if not k.endswith("_p95_s")}
        session.execute(update(raw).where(raw.c.id == sid).values(evidence=old))
    sign_in(app_client, seeded["tokens"]["viewer"])
    page = app_client.get(f"/ui/suggestions/{sid}")
    assert page.status_code == 200
    assert "Latency p95</th><td>—</td><td>—</td>" in page.text


def test_a_session_ends_when_its_token_expires(app_client: TestClient, seeded: dict, engine) -> None:
    from datetime import timedelta

    from trimloop.core import store
    from trimloop.core.db import session_scope
    from trimloop.core.tables import utcnow

    with session_scope(engine) as session:
        token, clear = store.create_token(session=session, name="contractor", role="viewer", actor="test",
                                          expires_in_days=7)
        token_id = token.id
    sign_in(app_client, clear)
    assert app_client.get("/ui/").status_code == 200
    with session_scope(engine) as session:  # a week goes by
        row = session.get(type(token), token_id)
        row.expires_at = utcnow() - timedelta(minutes=1)
        session.add(row)
    assert app_client.get("/ui/").headers["location"].startswith("/ui/login")


def test_the_dashboard_survives_costs_stored_before_sync_checked_bounds(app_client: TestClient, seeded: dict,
                                                                       engine) -> None:
    """An Infinity (or two 1e308s) in the logs made the finance dashboard fail for everyone; sums
    now leave out costs past the bounds, so the page renders with the finite ones."""
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from trimloop.core.tables import LogRecord

    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(insert(LogRecord.__table__), [  # type: ignore[attr-defined]
            {"connector": "old", "external_id": f"bad-{i}", "cost": cost, "model": "big/model", "inputs": {},
             "feedback": [], "meta": {}, "called_at": now} for i, cost in enumerate(
                [float("inf"), 1e308, 1e308, 0.25])])
        from trimloop.core import traffic

        traffic.rebuild(conn)  # stored before migration 0010 too: its backfill aggregates them
    sign_in(app_client, seeded["tokens"]["viewer"])
    dash = app_client.get("/ui/dashboard")
    assert dash.status_code == 200, dash.text[:500]
    assert "inf" not in dash.text.lower().replace("info", "")
    csv = app_client.get("/ui/dashboard.csv")
    assert csv.status_code == 200 and "inf" not in csv.text.lower()


def test_a_suggestion_shows_what_the_prompt_cache_does_to_its_saving(app_client: TestClient, seeded: dict,
                                                                     engine) -> None:
    from sqlalchemy import JSON, column, select, table, update

    from trimloop.core.db import session_scope

    sid = seeded["triage"][0]
    raw = table("suggestion", column("id"), column("evidence", JSON))
    note = ("the candidate's static prefix (812 tokens) falls under the 1,024-token cache minimum of openai: "
            "saves 12 %, not 59 %")
    with session_scope(engine) as session:
        evidence = session.execute(select(raw.c.evidence).where(raw.c.id == sid)).scalar_one()
        evidence["savings"].update(cached_share_before=0.72, cached_share_after=0.0, naive_monthly=2.69,
                                   cache_note=note)
        evidence["prices"] = {"gpt-4.1-mini": {"cache_read": "0.1 (litellm price map (cache_read_input_token_cost))"}}
        session.execute(update(raw).where(raw.c.id == sid).values(evidence=evidence))
    sign_in(app_client, seeded["tokens"]["viewer"])
    page = app_client.get(f"/ui/suggestions/{sid}")
    assert page.status_code == 200
    assert "Prompt read from the provider's cache</th><td>72 %</td><td>0 %</td>" in page.text
    assert "saves 12 %, not 59 %" in page.text and "$2.69" in page.text
    assert "cache_read_input_token_cost" in page.text


def test_the_evidence_page_points_to_every_item_when_they_were_stored(app_client: TestClient, seeded: dict,
                                                                       engine) -> None:
    from trimloop.core.db import session_scope
    from trimloop.core.tables import Suggestion

    sign_in(app_client, seeded["tokens"]["viewer"])
    sid = seeded["triage"][0]
    assert "/items</code>" not in app_client.get(f"/ui/suggestions/{sid}").text  # seeded without eval runs
    with session_scope(engine) as session:
        row = session.get(Suggestion, sid)
        row.evidence = row.evidence.model_copy(update={"baseline_eval_run_id": 1, "candidate_eval_run_id": 2})
        session.add(row)
    assert f"<code>GET /suggestions/{sid}/items</code>" in app_client.get(f"/ui/suggestions/{sid}").text
