"""A repair suggestion without a browser: the queue page marks it and lists it first, its page
explains the superiority test and the cost rise, and `GET /suggestions?kind=repair` filters by kind."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.evals.health_seed import OPTIONS
from tests.ui import seed
from tests.ui.conftest import sign_in
from tests.ui.test_browser_repair import repaired
from trimloop.api.app import create_app
from trimloop.core.settings import Settings
from trimloop.testing.fake_provider import fake_model


def test_the_queue_and_the_api_mark_a_repair(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path / "home", api={"failed_logins_per_minute": 1000},
                        models={"fake/big": fake_model(50, 100), "fake/small": fake_model(5, 10)},
                        prompts={"support-triage": OPTIONS | {"rungs": [8, 24], "dataset_size": 200,
                                                              "holdout_fraction": 0.6, "models": ["fake/small"]}})
    cost = seed.prompt_with_suggestions(engine, "billing-triage", 2)
    repair = repaired(engine, settings)
    tokens = seed.tokens(engine)
    with TestClient(create_app(settings, engine), follow_redirects=False) as client:
        bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
        listed = client.get("/suggestions", headers=bearer).json()
        assert [s["id"] for s in listed][0] == repair and listed[0]["kind"] == "repair"
        assert {s["kind"] for s in listed[1:]} == {"cost"}
        only = client.get("/suggestions", params={"kind": "repair"}, headers=bearer).json()
        assert [s["id"] for s in only] == [repair]
        assert [s["id"] for s in client.get("/suggestions", params={"kind": "cost"}, headers=bearer).json()] \
            == sorted(cost, key=lambda i: -next(s["projected_monthly_savings"] for s in listed if s["id"] == i))
        bad = client.get("/suggestions", params={"kind": "cheaper"}, headers=bearer)
        assert bad.status_code == 422, bad.text
        detail = client.get(f"/suggestions/{repair}", headers=bearer).json()
        assert detail["kind"] == "repair" and detail["evidence"]["kind"] == "repair"
        gain = detail["evidence"]["repair"]["gains"]["label"]
        assert gain["lower"] > gain["min_effect"] == 0.05 and detail["evidence"]["evaluators"]["label"]["test"] == \
            "superiority"

        sign_in(client, tokens["reviewer"])
        queue = client.get("/ui/").text
        cards = re.findall(r'<li class="card( repair)?">', queue)
        assert cards == [" repair", "", ""], cards
        assert 'class="kind repair"' in queue and "then repairs of failing prompts" in queue
        assert re.search(r"better on 1 of 1 evaluator: label \+0\.\d\d \(0\.0\d → 1\.00\)", queue)
        page = client.get(f"/ui/suggestions/{repair}").text
        assert "better by at least δ = 0.05" in page and "non-inferior at margin" not in page
        assert "its health was <strong>broken</strong>" in page and "superior" in page
        assert "red line: +δ" in page
