"""Realized savings and prompt traffic from sampled logs, worked out by hand: a log with
sample_rate r stands for 1 / r calls and 1 / r times its cost."""

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from trimloop.api import reporting
from trimloop.api.app import create_app
from trimloop.core.db import session_scope
from trimloop.core.settings import Settings
from trimloop.core.tables import Deployment, LogRecord, Prompt, PromptVersion, Suggestion


def test_realized_savings_and_traffic_count_sampled_logs_by_their_weight(engine, monkeypatch, tmp_path, headers):
    now = datetime.now(timezone.utc)
    monkeypatch.setattr(reporting, "utcnow", lambda: now)
    day = timedelta(days=1)
    since = now - 10 * day
    with session_scope(engine) as session:
        prompt = Prompt(name="p", connector="local", config={})
        session.add(prompt)
        session.flush()
        base, cand = (PromptVersion(prompt_id=prompt.id, sha=f"{i:064d}", template={"kind": "text", "text": f"v{i}"},
                                    model="m", params={}, connector="local", labels=[]) for i in range(2))
        session.add_all([base, cand])
        session.flush()
        rows = [(base.id, since - 3 * day, 0.002, 0.5), (base.id, since - 2 * day, 0.002, 0.5),
                (base.id, since - day, 0.004, None)]
        rows += [(cand.id, since + k * day, 0.001, 0.1) for k in range(5)]
        session.add_all(LogRecord(connector="local", external_id=f"l{i}", prompt_id=prompt.id, version_id=v,
                                  called_at=at, cost=cost, model="m", sample_rate=rate)
                        for i, (v, at, cost, rate) in enumerate(rows))
        s = Suggestion(prompt_id=prompt.id, baseline_version_id=base.id, candidate_version_id=cand.id,
                       candidate_sha="x", status="deployed", baseline_cost_per_call=0.9, projected_monthly_savings=1.0)
        session.add(s)
        session.flush()
        session.add(Deployment(suggestion_id=s.id, connector="local", label="production", action="promote",
                               status="done", actor="t", created_at=since))
        prompt_id = prompt.id
    with session_scope(engine) as session:
        [row] = reporting.realized_rows(session, dict(session.exec(select(Prompt.id, Prompt.name)).all()))
    # baseline: 2 logs at rate 0.5 (4 calls at 0.002) and 1 unsampled at 0.004 → 0.012 / 5 = 0.0024 a call
    # candidate: 5 logs at rate 0.1 → 50 calls at 0.001; to date 50 × 0.0014 = 0.07; 50 / 10 days × 30 × 0.0014
    assert row.baseline_cost_per_call == pytest.approx(0.0024, rel=1e-12)
    assert (row.realized_calls, row.realized_cost_per_call) == (50, pytest.approx(0.001, rel=1e-12))
    assert row.realized_savings_to_date == pytest.approx(0.07, rel=1e-12)
    assert row.realized_monthly_savings == pytest.approx(0.21, rel=1e-9)
    with TestClient(create_app(Settings(home=tmp_path / "home"), engine)) as client:
        traffic = client.get(f"/prompts/{prompt_id}/traffic", headers=headers["viewer"]).json()
    assert traffic["calls"] == 55 and traffic["total_cost"] == pytest.approx(0.062, rel=1e-12)
    assert {m["model"]: m["calls"] for m in traffic["by_model"]} == {"m": 55}
