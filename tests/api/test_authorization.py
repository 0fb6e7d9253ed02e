"""The authorization matrix, generated from the app's route table: every route × every role.

A new route fails `test_every_route_has_a_declared_permission` until it is added to EXPECTED,
so no route can skip the matrix.
"""

import hashlib
import re
from datetime import datetime

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from trimloop.api.auth import PERMISSIONS
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.errors import UserError

from tests.api.conftest import ROLES

# (method, path) → permission needed; None = open (health only).
EXPECTED = {
    ("GET", "/health"): None,
    ("GET", "/openapi.json"): "read",
    ("GET", "/prompts"): "read",
    ("GET", "/prompts/{prompt_id}"): "read",
    ("GET", "/prompts/{prompt_id}/versions"): "read",
    ("GET", "/prompts/{prompt_id}/traffic"): "read",
    ("GET", "/prompts/{prompt_id}/health"): "read",
    ("GET", "/connectors"): "read",
    ("GET", "/models"): "read",
    ("POST", "/connectors/{name}/test"): "operate",
    ("POST", "/connectors/sync"): "operate",
    ("GET", "/datasets"): "read",
    ("GET", "/datasets/{dataset_id}"): "read",
    ("GET", "/datasets/{dataset_id}/items"): "read",
    ("POST", "/datasets/import"): "operate",
    ("POST", "/runs"): "operate",
    ("GET", "/runs"): "read",
    ("GET", "/runs/{run_id}"): "read",
    ("POST", "/runs/{run_id}/cancel"): "operate",
    ("GET", "/runs/{run_id}/events"): "read",
    ("GET", "/suggestions"): "read",
    ("GET", "/suggestions/{suggestion_id}"): "read",
    ("GET", "/suggestions/{suggestion_id}/items"): "read",
    ("GET", "/suggestions/{suggestion_id}/watch"): "read",
    ("POST", "/suggestions/{suggestion_id}/approve"): "review",
    ("POST", "/suggestions/{suggestion_id}/reject"): "review",
    ("POST", "/suggestions/{suggestion_id}/deploy"): "operate",
    ("POST", "/suggestions/{suggestion_id}/promote"): "operate",
    ("POST", "/suggestions/{suggestion_id}/rollback"): "operate",
    ("GET", "/reports/savings"): "read",
    ("GET", "/audit"): "read",
    ("POST", "/tokens"): "admin",
    ("GET", "/tokens"): "admin",
    ("POST", "/tokens/{token_id}/revoke"): "admin",
    ("GET", "/doctor"): "operate",
    ("POST", "/v1/traces"): "ingest",
}


def routes(app):  # type: ignore[no-untyped-def]
    """(method, path) of every route the app serves, read from its route table."""
    found = set()
    for context in iter_route_contexts(app.routes):
        for method in context.methods or ():
            if method != "HEAD":
                found.add((method, context.path))
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "nope" if m.group(1) == "name" else "999999", path)


def test_every_route_has_a_declared_permission(client):
    assert routes(client.app) == set(EXPECTED)
    assert any(isinstance(c.route, APIRoute) for c in iter_route_contexts(client.app.routes))


@pytest.mark.parametrize("method,path", sorted(EXPECTED))
def test_route_answers_each_role_as_declared(client, headers, method, path):
    need = EXPECTED[(method, path)]
    url = concrete(path)
    anonymous = client.request(method, url, json={})
    if need is None:
        assert anonymous.status_code == 200
        return
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"] == "unauthorized"
    bogus = client.request(method, url, json={}, headers={"Authorization": "Bearer tlk_00000000_nope"})
    assert bogus.status_code == 401
    for role in ROLES:
        reply = client.request(method, url, json={}, headers=headers[role])
        assert reply.status_code < 500, (role, reply.text)
        if need in PERMISSIONS[role]:
            assert reply.status_code not in (401, 403), (role, reply.text)
        else:
            assert reply.status_code == 403, (role, reply.text)
            assert reply.json()["error"]["code"] == "forbidden"


def test_revoked_token_is_refused(client, headers, engine):
    assert client.get("/prompts", headers=headers["viewer"]).status_code == 200
    with session_scope(engine) as session:
        token = next(t for t in store.list_tokens(session=session) if t.role == "viewer")
        store.revoke_token(session=session, token_id=token.id, actor="test")
    assert client.get("/prompts", headers=headers["viewer"]).status_code == 401


def test_tokens_are_stored_hashed_and_shown_once(client, headers, engine):
    created = client.post("/tokens", json={"name": "finance", "role": "viewer"}, headers=headers["admin"])
    assert created.status_code == 201
    clear = created.json()["token"]
    assert client.get("/reports/savings", headers={"Authorization": f"Bearer {clear}"}).status_code == 200
    listed = client.get("/tokens", headers=headers["admin"]).text
    secret = clear.split("_", 2)[2]  # tlk_<prefix>_<secret>; the secret may itself hold "_"
    assert secret and clear not in listed and secret not in listed
    with session_scope(engine) as session:
        row = next(t for t in store.list_tokens(session=session) if t.name == "finance")
        assert row.digest == hashlib.sha256(clear.encode()).hexdigest() and secret not in row.digest
        assert row.salt is None and row.token_hash is None  # no PBKDF2 for new tokens
    audit = client.get("/audit", params={"action": "token.create"}, headers=headers["viewer"]).text
    assert clear not in audit


def test_failed_logins_are_rate_limited_per_client(settings, engine):
    from fastapi.testclient import TestClient

    from trimloop.api.app import create_app

    strict = settings.model_copy(update={"api": settings.api.model_copy(update={"failed_logins_per_minute": 3})})
    with TestClient(create_app(strict, engine)) as client:
        codes = [client.get("/prompts", headers={"Authorization": "Bearer tlk_00000000_wrong"}).status_code
                 for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        limited = client.get("/prompts", headers={"Authorization": "Bearer tlk_00000000_wrong"})
        assert int(limited.headers["Retry-After"]) > 0
        assert limited.json()["error"]["code"] == "too_many_failed_logins"
        assert client.get("/health").status_code == 200


def test_a_token_that_expires_is_refused_once_it_has(client, headers, engine):
    from datetime import timedelta

    from trimloop.core.tables import ApiToken, utcnow

    created = client.post("/tokens", json={"name": "ci", "role": "viewer", "expires_in_days": 1},
                          headers=headers["admin"])
    assert created.status_code == 201, created.text
    body = created.json()
    left = (datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")) - utcnow()).total_seconds()
    assert 86_300 < left <= 86_400
    bearer = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/prompts", headers=bearer).status_code == 200
    with session_scope(engine) as session:  # a day goes by
        token = session.get(ApiToken, body["id"])
        token.expires_at = utcnow() - timedelta(seconds=1)
        session.add(token)
    refused = client.get("/prompts", headers=bearer)
    assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]
    assert client.get("/prompts", headers=headers["viewer"]).status_code == 200  # tokens without expiry go on
    for bad in (0, -3, 4000, "soon"):
        reply = client.post("/tokens", json={"name": "x", "role": "viewer", "expires_in_days": bad},
                            headers=headers["admin"])
        assert reply.status_code == 422 and "expires_in_days" in reply.text, (bad, reply.text)


def test_token_lifetime_is_checked_where_tokens_are_made(engine):
    with session_scope(engine) as session:
        with pytest.raises(UserError, match="at most 3650 days") as caught:
            store.create_token(session=session, name="x", role="viewer", actor="test", expires_in_days=0)
        assert "--expires-days" in caught.value.hint
