"""One error body everywhere; bad input is 4xx naming the field; the OpenAPI document is complete."""

from fastapi.testclient import TestClient

from tests.api.conftest import synced
from trimloop.api.app import create_app

SHAPE = {"code", "message", "where", "hint"}


def test_not_found_validation_and_unknown_route_share_one_shape(client, headers):
    h = headers["engineer"]
    missing = client.get("/suggestions/424242", headers=h)
    assert missing.status_code == 404 and set(missing.json()["error"]) == SHAPE
    assert "424242" in missing.json()["error"]["message"] and missing.json()["error"]["hint"]
    bad_query = client.get("/suggestions", params={"limit": "lots"}, headers=h)
    assert bad_query.status_code == 422 and bad_query.json()["error"]["where"] == "query field 'limit'"
    bad_body = client.post("/runs", json={"prompt_id": "x", "budget_dollars": -1}, headers=h)
    assert bad_body.status_code == 422
    assert "body field 'prompt_id'" in bad_body.json()["error"]["message"]
    assert "body field 'budget_dollars'" in bad_body.json()["error"]["message"]
    not_json = client.post("/runs", content=b"{nope", headers={**h, "Content-Type": "application/json"})
    assert not_json.status_code == 422 and set(not_json.json()["error"]) == SHAPE
    nowhere = client.get("/nowhere", headers=h)
    assert nowhere.status_code == 404 and set(nowhere.json()["error"]) == SHAPE


def test_user_errors_from_the_store_are_400_with_a_hint(client, headers, engine, settings):
    prompt_id = synced(engine, settings)
    bad_option = client.post("/runs", json={"prompt_id": prompt_id, "budget_calls": 5, "config": {"nope": 1}},
                             headers=headers["engineer"])
    assert bad_option.status_code == 422  # options are checked before a run is queued
    assert bad_option.json()["error"]["where"] == "body field 'config.nope'"
    no_prompt = client.post("/runs", json={"prompt_id": 999, "budget_calls": 5}, headers=headers["engineer"])
    assert no_prompt.status_code == 404 and no_prompt.json()["error"]["where"] == "prompt_id"
    empty_gold = client.post("/datasets/import", headers=headers["engineer"], json={
        "prompt_id": prompt_id, "format": "jsonl", "content": "not json\n", "inputs": {"ticket": "ticket"}})
    assert empty_gold.status_code == 400 and "line 1" in empty_gold.json()["error"]["message"]


def test_openapi_document_is_complete(client, headers):
    assert client.get("/openapi.json").status_code == 401
    spec = client.get("/openapi.json", headers=headers["viewer"]).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            assert op.get("summary"), (method, path)
            if path != "/health":
                assert {"401", "403", "422"} <= set(op["responses"]), (method, path)
                assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    schemas = spec["components"]["schemas"]
    for name in ("RunCreate", "GoldImport", "TokenCreate", "RejectRequest"):
        assert schemas[name].get("examples"), name
    assert "HTTPValidationError" not in schemas


def test_a_busy_database_is_a_503_with_retry_after_not_a_500(settings, engine):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    app = create_app(settings, engine)

    @app.get("/_locked")
    def locked() -> None:
        raise OperationalError("UPDATE prompt …", {}, sqlite3.OperationalError("database is locked"))

    @app.get("/_broken")
    def broken() -> None:
        raise OperationalError("SELECT …", {}, sqlite3.OperationalError("no such table: prompt"))

    with TestClient(app, raise_server_exceptions=False) as client:
        busy = client.get("/_locked")
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
        assert busy.json()["error"]["code"] == "database_busy" and "retry" in busy.json()["error"]["hint"]
        other = client.get("/_broken")
        assert other.status_code == 500 and other.json()["error"]["code"] == "internal"


def test_ids_and_offsets_past_what_the_database_stores_are_422_not_500(client, headers):
    """PostgreSQL's INTEGER ids end at 2^31 - 1 and OFFSET at 2^63 - 1; SQLite's at 2^63 - 1."""
    h = headers["admin"]
    for path in ("/prompts/2147483648/versions", "/runs/2147483648", "/suggestions/2147483648",
                 "/datasets/2147483648"):
        answer = client.get(path, headers=h)
        assert answer.status_code in (404, 422), (path, answer.text)  # 422 where the column cannot hold it
        assert set(answer.json()["error"]) == SHAPE
    for path, params in (("/suggestions/9223372036854775808", {}), ("/datasets", {"offset": 2**63}),
                         ("/runs", {"prompt_id": 2**63})):
        answer = client.get(path, params=params, headers=h)
        assert answer.status_code == 422, (path, answer.text)
        error = answer.json()["error"]
        assert "out of range" in error["message"] and path in error["where"] and error["hint"]
    refused = client.post("/suggestions/2147483648/reject", json={"reason": "too long"}, headers=h)
    assert refused.status_code in (404, 422), refused.text
