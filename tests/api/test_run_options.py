"""POST /runs checks the run's options before queueing: bad ones get 422 naming the field (and
no run), options broken in trimloop.toml get 400 naming the key there; good ones get 202."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.conftest import synced
from trimloop.api.app import create_app
from trimloop.core.settings import Settings

GOOD = {"evaluators": ["exact"], "margins": {"exact": 0.03}, "models": ["local/smollm2-135m"],
        "rungs": [10, 20], "alpha": 0.05}


def start(settings: Settings, engine: Engine, headers: dict[str, dict[str, str]], config: dict[str, Any]) -> Any:
    prompt_id = synced(engine, settings)
    # a gateway that is never reached for a refused run; an accepted one fails at its first call
    with TestClient(create_app(settings, engine, gateway=object())) as client:
        reply = client.post("/runs", json={"prompt_id": prompt_id, "config": config}, headers=headers["engineer"])
        runs = client.get("/runs", headers=headers["viewer"]).json()
    return reply, runs


def test_good_options_are_queued(settings: Settings, engine: Engine, headers: dict[str, dict[str, str]]) -> None:
    reply, runs = start(settings, engine, headers, GOOD)
    assert reply.status_code == 202, reply.text
    assert reply.json()["config"] == GOOD and [r["id"] for r in runs] == [reply.json()["id"]]


@pytest.mark.parametrize(("config", "where", "says"), [
    ({"margin": -0.1}, "config.margin", "greater than or equal to 0"),
    ({"evaluators": {"label": {"labelz": ["a"]}}}, "config.evaluators.label", "labelz"),
    ({"evaluators": ["exact"], "margins": {"matches_baseline": 0.1}}, "config.margins.matches_baseline",
     "does not use"),
    ({"margins": {"rouge": 0.1}}, "config.margins.rouge", "does not use"),
    ({"proposer_model": "local/nope"}, "config.proposer_model", "unknown local model"),
    ({"models": [""]}, "config.models.0", "empty model id"),
    ({"dataset_size": 5}, "config.dataset_size", "greater than or equal to 10"),
])
def test_bad_options_get_422_and_no_run(settings: Settings, engine: Engine, headers: dict[str, dict[str, str]],
                                        config: dict[str, Any], where: str, says: str) -> None:
    reply, runs = start(settings, engine, headers, config)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_request" and error["where"] == f"body field '{where}'"
    assert says in error["message"] and error["message"].startswith(f"body field '{where}'")
    assert error["hint"]
    assert runs == []


def test_unknown_option_hint_lists_the_known_ones(settings: Settings, engine: Engine,
                                                  headers: dict[str, dict[str, str]]) -> None:
    reply, _ = start(settings, engine, headers, {"budget": 10})
    error = reply.json()["error"]
    assert reply.status_code == 422 and error["where"] == "body field 'config.budget'"
    assert "known options:" in error["hint"] and "budget_calls" in error["hint"]


def test_options_broken_in_the_file_are_a_config_error(settings: Settings, engine: Engine,
                                                       headers: dict[str, dict[str, str]]) -> None:
    broken = settings.model_copy(update={"prompts": {"triage": {"margin": 2.0}}})
    reply, runs = start(broken, engine, headers, {"alpha": 0.05})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "bad_config" and error["where"] == "[prompts.triage].margin"
    assert runs == []
    fixed, _ = start(broken, engine, headers, {"margin": 0.05})  # the run's own option overrides the file's
    assert fixed.status_code == 202, fixed.text
