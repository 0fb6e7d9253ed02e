"""The run event stream refuses a Last-Event-ID it cannot look up before the stream starts."""

from __future__ import annotations

from tests.api.conftest import synced
from trimloop.core.db import session_scope
from trimloop.core.tables import OptimizationRun, RunEvent


def test_a_last_event_id_past_the_id_range_is_422_before_the_stream(client, settings, engine, headers):
    prompt_id = synced(engine, settings)
    with session_scope(engine) as session:
        run = OptimizationRun(prompt_id=prompt_id, status="succeeded")
        session.add(run)
        session.flush()
        session.add(RunEvent(run_id=run.id, kind="run.started", data={}))
        run_id = run.id
    url = f"/runs/{run_id}/events?follow=false"
    for bad in (str(2**63), str(2**64), "-1"):  # 2^63 broke the stream mid-response (OverflowError)
        response = client.get(url, headers={**headers["viewer"], "Last-Event-ID": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["where"] == "header field 'last-event-id'"
    resumed = client.get(url, headers={**headers["viewer"], "Last-Event-ID": str(2**31 - 1)})
    assert resumed.status_code == 200 and resumed.text.startswith("event: end")
    everything = client.get(url, headers=headers["viewer"])
    assert everything.status_code == 200 and "event: run.started" in everything.text
