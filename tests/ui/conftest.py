"""UI fixtures: a seeded SQLite database, one token per role, and a signed-in test client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from trimloop.api.app import create_app
from trimloop.core.settings import Settings

from tests.ui import seed


@pytest.fixture
def seeded(engine: Engine) -> dict[str, object]:
    """Two prompts with pending suggestions (one with a hostile name) and a token per role."""
    hostile = seed.prompt_with_suggestions(engine, seed.HOSTILE, 1)
    triage = seed.prompt_with_suggestions(engine, "billing-triage", 3)
    return {"hostile": hostile[0], "triage": triage, "tokens": seed.tokens(engine)}


@pytest.fixture
def app_client(tmp_path: Path, engine: Engine, seeded: dict[str, object]) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path / "home", api={"failed_logins_per_minute": 1000})
    with TestClient(create_app(settings, engine), follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(client: TestClient, token: str) -> None:
    page = client.get("/ui/login")
    response = client.post("/ui/login", data={"csrf": csrf_of(page.text), "token": token, "next": "/ui/"})
    assert response.status_code == 303, response.text
