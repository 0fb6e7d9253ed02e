"""The runs list and the run page show each run's outcome — the suggestion with its cut, or the
one-line reason — and a blocked run's findings with their fixes, not just `succeeded`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.optimizer.test_preflight import ENOUGH, SELF_HOSTED, quiet_provider, run_it, seed_prompt
from tests.ui.conftest import sign_in
from trimloop.core.db import session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun


def blocked_run(engine: Engine, tmp_path: Path) -> int:
    """A real run on a prompt whose model has no price: blocked by the preflight."""
    settings = Settings(home=tmp_path / "home")
    prompt_id = seed_prompt(engine, settings, name="support-bot", model=SELF_HOSTED, distinct=ENOUGH, cost=None)

    async def go() -> int:
        gateway = Gateway(settings, engine=engine, provider=quiet_provider())
        try:
            return (await run_it(engine, settings, prompt_id, gateway)).id
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def test_runs_list_and_run_page_show_the_outcome(app_client: TestClient, seeded: dict, engine: Engine,
                                                 tmp_path: Path) -> None:
    blocked = blocked_run(engine, tmp_path)
    with session_scope(engine) as session:
        prompt_id = session.get(OptimizationRun, blocked).prompt_id
        made = OptimizationRun(prompt_id=prompt_id, status="succeeded", config={},
                               results={"suggestion_id": seeded["triage"][0],
                                        "suggestion_cut": "−38 % cost per call, label holds (margin 0.02, n 240)"})
        session.add(made)
        session.flush()
        made_id = made.id
    sign_in(app_client, seeded["tokens"]["viewer"])

    listing = app_client.get("/ui/runs").text
    assert "<th scope=\"col\">Outcome</th>" in listing
    assert f"blocked: the price of {SELF_HOSTED} is unknown and its logs carry no cost" in listing
    assert f"suggestion #{seeded['triage'][0]}: −38 % cost per call, label holds (margin 0.02, n 240)" in listing

    page = app_client.get(f"/ui/runs/{blocked}").text
    assert 'id="outcome" class="outcome outcome-blocked"' in page
    assert f"blocked: the price of {SELF_HOSTED} is unknown" in page
    assert 'class="finding finding-problem"' in page and "finding-warning" in page  # the root cause, then warnings
    assert page.index("finding-problem") < page.index("finding-warning")
    assert f"[models.&#34;{SELF_HOSTED}&#34;]\ninput_per_mtok = …" in page  # the fix, escaped, as lines
    assert "stopped before spending anything" in page

    made_page = app_client.get(f"/ui/runs/{made_id}").text
    assert f'<a href="/ui/suggestions/{seeded["triage"][0]}">suggestion #{seeded["triage"][0]}: −38 % cost' in made_page
