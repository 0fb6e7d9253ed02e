"""The savings report: spend by day/prompt/model, projected of open suggestions, realized of
promoted ones from post-promotion logs, and the CSV export."""

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest

from tests.api.conftest import make_suggestion, synced, write_logs


def test_realized_savings_next_to_projected(client, headers, engine, settings, store_dir):
    prompt_id = synced(engine, settings)
    shipped = make_suggestion(engine, prompt_id, savings=300.0)
    waiting = make_suggestion(engine, prompt_id, savings=120.0)
    eng = headers["engineer"]
    assert client.post(f"/suggestions/{shipped}/approve", headers=headers["reviewer"]).status_code == 200
    assert client.post(f"/suggestions/{shipped}/deploy", headers=eng).status_code == 200
    assert client.post(f"/suggestions/{shipped}/promote", headers=eng).status_code == 200
    # promotion supersedes the other open suggestion made against the old production version
    assert client.get(f"/suggestions/{waiting}", headers=headers["viewer"]).json()["status"] == "superseded"
    write_logs(store_dir, "2", 10, 0.0005, datetime.now(timezone.utc) + timedelta(seconds=1), "after")
    assert client.post("/connectors/sync", json={}, headers=eng).json()[0]["logs_added"] == 10

    report = client.get("/reports/savings", params={"days": 7}, headers=headers["viewer"]).json()
    assert sum(r["calls"] for r in report["spend_by_day"]) == 30
    assert report["spend_by_prompt"][0]["prompt"] == "triage"
    assert report["spend_by_model"][0] == {"model": "big/model", "calls": 30, "cost": pytest.approx(0.045),
                                           "day": None, "prompt_id": None, "prompt": None}
    assert report["projected"] == []
    [row] = report["realized"]
    assert row["projected_monthly_savings"] == 300.0 and row["realized_calls"] == 10
    assert row["baseline_cost_per_call"] == pytest.approx(0.002)
    assert row["realized_cost_per_call"] == pytest.approx(0.0005)
    assert row["realized_savings_to_date"] == pytest.approx(10 * 0.0015)
    assert report["total_realized_monthly"] == pytest.approx(row["realized_monthly_savings"])

    exported = client.get("/reports/savings", params={"format": "csv", "days": 7}, headers=headers["viewer"])
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["section"] for r in rows} == {"spend_by_day", "spend_by_prompt", "spend_by_model", "realized"}
    realized = next(r for r in rows if r["section"] == "realized")
    assert float(realized["realized_savings_to_date"]) == pytest.approx(0.015)


def test_projected_savings_of_pending_and_prompt_traffic(client, headers, engine, settings):
    prompt_id = synced(engine, settings)
    make_suggestion(engine, prompt_id, savings=40.0)
    make_suggestion(engine, prompt_id, savings=60.0)
    report = client.get("/reports/savings", headers=headers["viewer"]).json()
    assert [r["projected_monthly_savings"] for r in report["projected"]] == [60.0, 40.0]
    assert report["total_projected_monthly"] == 100.0 and report["realized"] == []
    traffic = client.get(f"/prompts/{prompt_id}/traffic", headers=headers["viewer"]).json()
    assert traffic["calls"] == 20 and traffic["cost_per_call"] == pytest.approx(0.002)
    assert traffic["latency_p50_s"] == pytest.approx(0.2) and traffic["by_model"][0]["model"] == "big/model"
    versions = client.get(f"/prompts/{prompt_id}/versions", headers=headers["viewer"]).json()
    assert [v["labels"] for v in versions][-1] == ["production"]
