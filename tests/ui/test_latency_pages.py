"""A latency suggestion without a browser (issue 21): its queue card and its page say "Objective:
latency p50" with the claim measured on fresh paired calls, cost cards say "cost", and
`GET /suggestions` carries the objective, the claim and the latency test (and filters by kind)."""

from __future__ import annotations

import html
import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.test_latency_suggestion import latency_suggestion, settings_for
from tests.ui import seed
from tests.ui.conftest import sign_in
from trimloop.api.app import create_app


def test_the_queue_and_the_page_say_which_objective_a_suggestion_serves(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(tmp_path)
    cost = seed.prompt_with_suggestions(engine, "billing-triage", 1)
    _, fast = latency_suggestion(engine, settings)
    tokens = seed.tokens(engine)
    with TestClient(create_app(settings, engine), follow_redirects=False) as client:
        bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
        listed = {s["id"]: s for s in client.get("/suggestions", headers=bearer).json()}
        s = listed[fast]
        assert s["kind"] == "latency" and s["objective"] == "latency p50" and s["claim"].startswith("p50 ")
        assert s["latency"]["passed"] and s["latency"]["ratio_upper"] < 1 and s["latency"]["n"] >= 50
        assert listed[cost[0]]["objective"] == "cost" and listed[cost[0]]["latency"] is None
        assert [x["id"] for x in client.get("/suggestions", params={"kind": "latency"}, headers=bearer).json()] == [fast]
        detail = client.get(f"/suggestions/{fast}", headers=bearer).json()
        assert detail["objective"] == "latency p50" and detail["evidence"]["latency"]["line"] in detail["claim"]
        schema = client.get("/openapi.json", headers=bearer).json()["components"]["schemas"]["SuggestionPublic"]["properties"]
        assert {"objective", "claim", "latency"} <= set(schema)

        sign_in(client, tokens["reviewer"])
        queue = html.unescape(client.get("/ui/").text)
        cards = dict(re.findall(r'<a href="/ui/suggestions/(\d+)">.*?<dt>Objective</dt><dd>([^<]+)</dd>', queue, re.S))
        assert cards == {str(fast): "latency p50", str(cost[0]): "cost"}, cards
        assert f"<dt>Faster</dt><dd><strong>{s['latency']['line']}</strong>" in queue and 'class="kind latency"' in queue
        page = html.unescape(client.get(f"/ui/suggestions/{fast}").text)
        assert f"<strong>Objective:</strong> latency p50 — {s['claim']}</p>" in page
        claim = re.search(r'<p id="latency-claim" class="ok">(.*?)</p>', page, re.S)
        assert claim and f"same {s['latency']['n']} holdout items" in claim.group(1)
        assert f"upper bound {s['latency']['ratio_upper']:.2f}" in claim.group(1) and "logged latencies are not used" \
            in claim.group(1)
        other = html.unescape(client.get(f"/ui/suggestions/{cost[0]}").text)
        assert "<strong>Objective:</strong> cost — " in other and 'id="latency-claim"' not in other
