"""`GET /doctor`: the doctor's typed findings for engineers, with no credential in them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from trimloop.api.app import create_app
from trimloop.core.settings import Settings
from trimloop.testing.fake_openai import free_port

from tests.api.conftest import synced


def test_engineers_get_the_findings_grouped_and_typed(client: TestClient, headers: dict, engine: Engine,
                                                      settings: Settings) -> None:
    synced(engine, settings)
    reply = client.get("/doctor", headers=headers["engineer"])
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [s["name"] for s in body["sections"]] == [
        "config", "database", "egress", "connectors", "prices", "local_models", "prompts"]
    codes = {f["code"]: f for s in body["sections"] for f in s["findings"]}
    assert codes["config.in_use"]["level"] == "ok" and codes["database.ok"]["level"] == "ok"
    assert "local (files): reachable; 1 prompt" in codes["connector.reads"]["message"]
    # big/model has no price, but its logs carry a cost that stands in for the baseline
    assert codes["prices.unknown_logged"]["level"] == "warning"
    assert '[models."big/model"]' in codes["prices.unknown_logged"]["fix"]
    assert codes["prompt.ready"]["data"] == {"prompt": "triage", "logs": 20, "production_logs": 20, "pending": 0,
                                              "calls": 20}
    assert sum(body["counts"].values()) == sum(len(s["findings"]) for s in body["sections"])
    assert body["level"] == max((f["level"] for s in body["sections"] for f in s["findings"]),
                                key=("ok", "warning", "problem").index)
    assert client.get("/doctor", headers=headers["viewer"]).status_code == 403
    assert client.get("/doctor", headers=headers["reviewer"]).status_code == 403
    assert client.get("/doctor", params={"max_logs": 0}, headers=headers["engineer"]).status_code == 422


def test_connector_credentials_never_reach_the_findings(settings: Settings, engine: Engine, headers: dict) -> None:
    leaky = Settings(home=settings.home, api={"failed_logins_per_minute": 1000}, connectors={
        "ml": {"type": "mlflow", "url": f"http://Us3rN4me:S3CRET@127.0.0.1:{free_port()}/?token=T0KEN"}})
    with TestClient(create_app(leaky, engine)) as client:
        reply = client.get("/doctor", headers=headers["admin"])
    assert reply.status_code == 200
    codes = {f["code"]: f for s in reply.json()["sections"] for f in s["findings"]}
    assert codes["connector.unreachable"]["level"] == "problem" and reply.json()["level"] == "problem"
    assert "cannot reach" in codes["connector.unreachable"]["message"]
    assert not [s for s in ("S3CRET", "T0KEN", "Us3rN4me") if s in reply.text]
