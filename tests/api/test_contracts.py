"""The typed contracts as clients see them: the OpenAPI schema documents the evidence, run results
and statuses field by field, and a status move the transition table forbids is a 409 naming both ends."""

from __future__ import annotations

from trimloop.core.status import TRANSITIONS, RunStatus, SuggestionStatus, sources

from tests.api.conftest import make_suggestion, synced


def _resolve(spec: dict, schema: dict) -> dict:
    """A schema with its $ref (or its one non-null anyOf branch's $ref) followed."""
    if "anyOf" in schema:
        schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def test_the_openapi_schema_shows_the_evidence_model_field_by_field(client, headers):
    spec = client.get("/openapi.json", headers=headers["viewer"]).json()
    schemas = spec["components"]["schemas"]
    evidence = _resolve(spec, schemas["SuggestionDetail"]["properties"]["evidence"])
    assert {"changes", "lineage", "evaluators", "verdict", "n", "prompt_tokens", "differing_items", "savings",
            "search", "price_sources", "evaluator_config", "baseline_feedback"} <= set(evidence["properties"])
    verdict = _resolve(spec, evidence["properties"]["evaluators"]["additionalProperties"])
    assert {"n", "baseline_mean", "candidate_mean", "delta", "lower", "upper", "margin", "alpha", "p_value",
            "verdict", "passed"} <= set(verdict["properties"])
    savings = _resolve(spec, evidence["properties"]["savings"])
    assert {"monthly", "monthly_low", "monthly_high", "calls_per_day", "payback_days"} <= set(savings["properties"])
    assert {"move", "detail"} <= set(_resolve(spec, evidence["properties"]["lineage"]["items"])["properties"])
    assert "template_diff" in _resolve(spec, evidence["properties"]["changes"])["properties"]
    results = _resolve(spec, schemas["RunPublic"]["properties"]["results"])
    assert {"suggestion_id", "no_suggestion", "certifications", "search_calls", "certify_calls"} <= set(results["properties"])
    status = _resolve(spec, schemas["SuggestionPublic"]["properties"]["status"])
    assert set(status["enum"]) == {s.value for s in SuggestionStatus}
    assert set(_resolve(spec, schemas["RunPublic"]["properties"]["status"])["enum"]) == {s.value for s in RunStatus}


def test_a_suggestion_reads_back_with_typed_evidence(client, headers, engine, settings):
    sid = make_suggestion(engine, synced(engine, settings))
    body = client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()
    assert body["status"] == "pending"
    assert body["evidence"]["evaluators"]["exact"]["lower"] == -0.01 and body["evidence"]["lineage"] == []
    assert body["evidence"]["holdout_n"] == 60  # a key the model does not know is kept, not dropped
    bad = client.get("/suggestions", params={"status": "done"}, headers=headers["viewer"])
    assert bad.status_code == 422 and "status" in bad.json()["error"]["where"]
    runs = client.get("/runs", params={"status": "done"}, headers=headers["viewer"])  # text filter: no match, no 500
    assert runs.status_code == 200 and runs.json() == []


def test_every_status_is_in_the_transition_table_and_the_ends_do_not_move():
    assert set(TRANSITIONS) == set(SuggestionStatus) | set(RunStatus)
    assert sources(SuggestionStatus.approved) == ("pending",)
    assert set(sources(SuggestionStatus.rejected)) == {"pending", "approved"}
    assert set(sources(SuggestionStatus.rolled_back)) == {"deployed", "rolling_back"}  # rolling_back: the claim
    assert set(sources(RunStatus.cancelled)) == {"queued", "running"}
    for done in (SuggestionStatus.rolled_back, SuggestionStatus.rejected, SuggestionStatus.superseded,
                 SuggestionStatus.expired, RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled):
        assert TRANSITIONS[done] == frozenset(), done


def test_an_illegal_move_is_a_409_naming_from_and_to(client, headers, engine, settings):
    sid = make_suggestion(engine, synced(engine, settings))
    assert client.post(f"/suggestions/{sid}/reject", json={"reason": "loses the order id"},
                       headers=headers["reviewer"]).status_code == 200
    approve = client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"])
    assert approve.status_code == 409 and approve.json()["error"]["code"] == "conflict"
    assert "rejected → approved is not allowed" in approve.json()["error"]["message"]
    assert approve.json()["error"]["where"] == f"suggestion {sid}"
    deploy = client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"])
    assert deploy.status_code == 409 and "rejected → deployed is not allowed" in deploy.json()["error"]["message"]
    rollback = client.post(f"/suggestions/{sid}/rollback", headers=headers["engineer"])
    assert rollback.status_code == 409 and "rejected → rolled_back" in rollback.json()["error"]["message"]
