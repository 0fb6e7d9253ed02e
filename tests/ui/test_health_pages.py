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


def test_a_run_that_ended_baseline_unhealthy_says_why_on_its_page(tmp_path: Path, engine: Engine) -> None:
    from trimloop.core.db import session_scope
    from trimloop.core.tables import OptimizationRun

    prompt_id = seed_triage(engine, quality="broken")
    why = "the baseline is broken, so the run did not search for cheaper variants of it: label: agrees with …"
    with session_scope(engine) as session:
        run = OptimizationRun(prompt_id=prompt_id, status="baseline_unhealthy", results={"no_suggestion": why})
        session.add(run)
        session.flush()
        run_id = run.id
    tokens = seed.tokens(engine)
    with TestClient(create_app(Settings(home=tmp_path / "home"), engine), follow_redirects=False) as client:
        sign_in(client, tokens["engineer"])
        page = client.get(f"/ui/runs/{run_id}").text
        assert 'id="unhealthy"' in page and "did not search" in page and f"/ui/prompts/{prompt_id}/health" in page
        assert "baseline_unhealthy" in client.get("/ui/runs").text
        events = client.get(f"/ui/runs/{run_id}/events").text  # a finished status: the stream ends
        assert "event: end" in events
