"""`GET /runs` and `GET /runs/{id}` carry each run's outcome in one line: the suggestion with its
cut, or why there is none (a blocked run: the preflight's root cause, with the findings typed)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import synced
from tests.api.test_end_to_end import wait_for
from trimloop.api.app import create_app
from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.tables import OptimizationRun
from trimloop.testing.fake_provider import FakeProvider


def test_a_blocked_run_reads_back_with_its_root_cause_and_findings(engine, settings, headers):
    """`triage` has 20 logged calls, all different: too few to certify anything at margin 0.02."""
    prompt_id = synced(engine, settings)
    provider = FakeProvider(responder=lambda model, prompt: "billing")
    app = create_app(settings, engine, gateway=Gateway(settings, engine=engine, provider=provider))
    with TestClient(app) as client:
        started = client.post("/runs", json={"prompt_id": prompt_id}, headers=headers["engineer"])
        assert started.status_code == 202 and started.json()["outcome"] == "queued"
        run = wait_for(client, started.json()["id"], headers["viewer"], statuses=("blocked", "succeeded", "failed"))
        assert run["status"] == "blocked" and provider.attempts == 0 and run["calls_made"] == 0
        assert run["outcome"].startswith("blocked: 20 distinct inputs among 20 logged calls (12 in the holdout, "
                                         "8 for the search) cannot certify anything")
        findings = run["results"]["findings"]
        assert [f["level"] for f in findings][:1] == ["problem"] and findings[0]["code"] == "too_few_inputs"
        assert findings[0]["data"]["distinct_inputs"] == 20 and findings[0]["fix"]
        # big/model is in no price map, but its logs carry costs: a warning, not a problem
        [priced] = [f for f in findings if f["code"] == "baseline_price_from_logs"]
        assert priced["level"] == "warning" and "big/model" in priced["message"]
        [listed] = client.get("/runs", headers=headers["viewer"]).json()
        assert listed["outcome"] == run["outcome"]


def test_a_run_with_a_suggestion_reads_as_its_cut(engine, settings, headers, client):
    prompt_id = synced(engine, settings)
    with session_scope(engine) as session:
        run = OptimizationRun(prompt_id=prompt_id, status="succeeded", config={},
                              results={"suggestion_id": 7, "suggestion_cut": "−38 % cost per call, label holds "
                                                                              "(margin 0.02, n 240)"})
        none = OptimizationRun(prompt_id=prompt_id, status="succeeded", config={},
                               results={"no_suggestion": "no suggestion, because every candidate was inferior"})
        session.add_all([run, none])
        session.flush()
        ids = run.id, none.id
    got = {r["id"]: r["outcome"] for r in client.get("/runs", headers=headers["viewer"]).json()}
    assert got[ids[0]] == "suggestion #7: −38 % cost per call, label holds (margin 0.02, n 240)"
    assert got[ids[1]] == "no suggestion, because every candidate was inferior"
    assert client.get(f"/runs/{ids[0]}", headers=headers["viewer"]).json()["outcome"] == got[ids[0]]


def test_the_openapi_schema_documents_the_outcome_and_the_findings(client, headers):
    spec = client.get("/openapi.json", headers=headers["viewer"]).json()
    schemas = spec["components"]["schemas"]
    run = schemas["RunPublic"]
    assert "outcome" in run["properties"] and "outcome" in run.get("required", [])
    assert "blocked" in run["properties"]["outcome"]["description"]
    results = schemas[run["properties"]["results"]["$ref"].rsplit("/", 1)[-1]]
    finding = schemas[results["properties"]["findings"]["items"]["$ref"].rsplit("/", 1)[-1]]
    assert {"level", "code", "message", "fix", "data"} <= set(finding["properties"])
    assert set(finding["properties"]["level"]["enum"]) == {"ok", "warning", "problem"}
    assert "blocked" in schemas[run["properties"]["status"]["$ref"].rsplit("/", 1)[-1]]["enum"]


async def test_a_blocked_run_is_announced_with_its_root_cause_and_fix(engine, tmp_path, monkeypatch):
    from tests.api.test_webhooks import SECRET, Receiver, hooked
    from tests.optimizer.test_preflight import ENOUGH, SELF_HOSTED, quiet_provider, run_it, seed_prompt
    from trimloop.api import webhooks
    from trimloop.core.settings import Settings

    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    receiver = Receiver()
    try:
        settings = hooked(Settings(home=tmp_path / "home"), receiver.url)  # every event, the default
        prompt_id = seed_prompt(engine, settings, name="support-bot", model=SELF_HOSTED, distinct=ENOUGH, cost=None)
        gateway = Gateway(settings, engine=engine, provider=quiet_provider())
        run = await run_it(engine, settings, prompt_id, gateway)
        await gateway.aclose()
        await webhooks.announce_run(engine=engine, settings=settings, run_id=run.id)
        [(sent, body)] = receiver.requests
    finally:
        receiver.close()
    import json

    payload = json.loads(body)
    assert sent["X-Trimloop-Event"] == payload["event"] == "run.blocked"
    data = payload["data"]
    assert data["run_id"] == run.id and data["codes"] == ["baseline_price_unknown"]
    assert data["summary"].startswith(f"run {run.id} blocked: the price of {SELF_HOSTED} is unknown")
    assert f'fix: add to trimloop.toml (USD per 1M tokens; for a self-hosted model, your own cost estimate):\n' \
           f'[models."{SELF_HOSTED}"]' in data["summary"]
