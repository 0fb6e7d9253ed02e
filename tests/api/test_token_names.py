"""Token names with control or formatting characters (NUL, line breaks, a right-to-left override)
are refused — by the API with 422 naming the field, by `trimloop tokens create` with the reason —
since names show in the audit log, token lists and terminals."""

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from trimloop.api.cli import _register, app
from trimloop.core.db import session_scope
from trimloop.core.tables import ApiToken

from tests.api.conftest import ROLES

_register()
BAD_NAMES = {"nul": "ci\x00bot", "newline": "ci-bot\nadmin-1 (admin) token.create", "rtl": "ci\u202ebot-gpj.exe",
             "zero width": "ad\u200bmin", "carriage return": "ci\rbot"}


@pytest.mark.parametrize("label", sorted(BAD_NAMES))
def test_the_api_refuses_a_name_with_control_characters(client, headers, engine, label):
    reply = client.post("/tokens", json={"name": BAD_NAMES[label], "role": "viewer"}, headers=headers["admin"])
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert "name" in error["where"] and "control or formatting characters" in error["message"]
    assert "U+" in error["message"] and "ci-bot" in error["message"]  # which character, and an example
    with session_scope(engine) as session:
        # ordered by id: PostgreSQL returns an updated row (the admin token's last use) after the others
        names = [t.name for t in session.exec(select(ApiToken).order_by(ApiToken.id)).all()]
    assert names == [f"{r}-1" for r in ROLES]


def test_ordinary_names_still_work(client, headers):
    for name in ("ci-bot", "Ana Lima (finance)", "équipe données", "数据团队"):
        reply = client.post("/tokens", json={"name": f"  {name} ", "role": "viewer"}, headers=headers["admin"])
        assert reply.status_code == 201 and reply.json()["name"] == name


def test_the_cli_refuses_it_with_the_reason(home_db):
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["tokens", "create", "--role", "viewer", "--name", "ci\u202ebot"])
    assert result.exit_code != 0  # `main` prints the UserError with its hint, no traceback
    error = str(result.exception)
    assert "U+202E" in error and "RIGHT-TO-LEFT OVERRIDE" in error and error.startswith("token name:")
    assert "--name ci-bot" in result.exception.hint
