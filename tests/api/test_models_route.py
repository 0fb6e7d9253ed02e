"""`GET /models`: each configured model's price per token class, and where each price came from."""

from __future__ import annotations

from fastapi.testclient import TestClient

from trimloop.api.app import create_app
from trimloop.core.settings import Settings


def test_models_route_lists_prices_per_class_with_sources(tmp_path, engine, headers) -> None:
    settings = Settings(home=tmp_path / "home", models={
        "gemini/gemini-2.5-pro": {}, "acme/mystery": {"api_base": "http://127.0.0.1:9/v1"},
        "gpt-4.1-mini": {"cache_read_per_mtok": 0.05}})
    with TestClient(create_app(settings, engine)) as client:
        response = client.get("/models", headers=headers["viewer"])
    assert response.status_code == 200, response.text
    models = {m["id"]: m for m in response.json()}
    pro = models["gemini/gemini-2.5-pro"]
    assert pro["prices"]["input"] == {"per_mtok": 1.25, "source": "litellm price map (input_cost_per_token)"}
    assert pro["long_context"][0]["above_tokens"] == 200_000 and pro["long_context"][0]["input_per_mtok"] == 2.5
    assert models["gpt-4.1-mini"]["prices"]["cache_read"]["source"].endswith("cache_read_per_mtok")
    assert models["acme/mystery"]["prices"]["input"] == {"per_mtok": None, "source": "unknown"}
    assert "local/smollm2-135m" in models
