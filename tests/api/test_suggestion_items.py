"""`GET /suggestions/{id}/items` for a suggestion stored before per-item results were kept, and
for one whose evidence names eval runs that are gone: a 404 that says why, never a 500."""

from trimloop.core.db import session_scope
from trimloop.core.tables import Suggestion

from tests.api.conftest import make_suggestion, synced


def test_a_suggestion_without_stored_items_says_why(client, headers, engine, settings):
    sid = make_suggestion(engine, synced(engine, settings))
    reply = client.get(f"/suggestions/{sid}/items", headers=headers["viewer"])
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert "no stored per-item results" in error["message"] and "new run" in error["hint"]
    assert client.get("/suggestions/999999/items", headers=headers["viewer"]).status_code == 404


def test_eval_runs_that_are_gone_are_a_404(client, headers, engine, settings):
    sid = make_suggestion(engine, synced(engine, settings))
    with session_scope(engine) as session:
        row = session.get(Suggestion, sid)
        row.evidence = row.evidence.model_copy(update={"baseline_eval_run_id": 123456, "candidate_eval_run_id": 123457})
        session.add(row)
    reply = client.get(f"/suggestions/{sid}/items", headers=headers["viewer"])
    assert reply.status_code == 404 and "no eval run with id" in reply.json()["error"]["message"]
