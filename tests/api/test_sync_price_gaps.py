"""`POST /connectors/sync` reports logged costs that disagree with tokens × the configured price."""

from __future__ import annotations

from fastapi.testclient import TestClient

from trimloop.api.app import create_app
from trimloop.core.settings import ModelConfig


def test_sync_route_reports_price_gaps(settings, engine, headers) -> None:
    # the store's logs: 30 input + 1 output tokens at $0.002 each; priced here at $1 / $2 per 1M tokens
    priced = settings.model_copy(update={"models": {"big/model": ModelConfig(
        api_base="http://127.0.0.1:9/v1", input_per_mtok=1.0, output_per_mtok=2.0)}})
    with TestClient(create_app(priced, engine)) as client:
        response = client.post("/connectors/sync", json={}, headers=headers["engineer"])
    assert response.status_code == 200, response.text
    [report] = response.json()
    [gap] = report["price_gaps"]
    assert (gap["prompt"], gap["model"], gap["checked"], gap["flagged"]) == ("triage", "big/model", 20, 20)
    assert abs(gap["median_gap"] - (0.002 / 32e-6 - 1)) < 1e-3
    assert gap["price_source"].startswith("custom price")
