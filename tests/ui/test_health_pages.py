"""The prompt pages without a browser: every prompt with its health, and one prompt's health page
(verdict, why with the numbers, signals per day), escaped and behind a session."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from trimloop.api.app import create_app
from trimloop.core.settings import Settings
from trimloop.core.tables import Prompt

from tests.evals.health_seed import OPTIONS, seed_triage
from tests.ui import seed
from tests.ui.conftest import sign_in


def test_the_prompts_page_and_a_broken_prompts_health_page(tmp_path: Path, engine: Engine) -> None:
    broken = seed_triage(engine, quality="broken", name="triage")
    good = seed_triage(engine, quality="good", name="triage-v2", seed=5)
    seed.prompt_with_suggestions(engine, seed.HOSTILE, 0)
    with Session(engine) as session:
        hostile = session.exec(select(Prompt.id).where(Prompt.name == seed.HOSTILE)).one()
    tokens = seed.tokens(engine)
    settings = Settings(home=tmp_path / "home", api={"failed_logins_per_minute": 1000},
                        prompts={"triage": OPTIONS, "triage-v2": OPTIONS})
    with TestClient(create_app(settings, engine), follow_redirects=False) as client:
        for path in ("/ui/prompts", f"/ui/prompts/{broken}/health"):
            assert client.get(path).headers["location"].startswith("/ui/login?next=")
        sign_in(client, tokens["viewer"])
        before = client.get("/ui/prompts")
        assert before.status_code == 200 and before.text.count("not checked") == 3 and 'aria-current="page"' in before.text
        page = client.get(f"/ui/prompts/{broken}/health")
        assert page.status_code == 200, page.text
        text = page.text
        assert 'id="verdict">Broken<' in text
        assert "agrees with reviewer labels on" in text and "always answering the most common label (billing)" in text
        assert "of answers name no label" in text and "format:no_label" in text and "<svg class=\"spark\"" in text
        assert "Against always answering the most common label" in text and "Cost and latency" in text
        assert client.get(f"/ui/prompts/{good}/health").text.count('id="verdict">Healthy<') == 1
        listing = client.get("/ui/prompts").text
        assert "health-broken" in listing and "health-healthy" in listing and "not checked" in listing
        assert "&lt;script&gt;" in listing and seed.HOSTILE not in listing
        hostile_page = client.get(f"/ui/prompts/{hostile}/health")
        assert hostile_page.status_code == 200 and "<script>alert" not in hostile_page.text
        assert client.get("/ui/prompts/999/health").status_code == 404
