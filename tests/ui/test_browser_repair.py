"""A repair suggestion in real headless Chromium against uvicorn: the review queue marks it as a
repair (first after migrations, with its cost rise), and its page explains the superiority test
and the extra cost. The repair is really made: a repair run of a broken prompt through the
gateway with a fake provider. Screenshots go to test-output/screenshots/ (not committed)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from trimloop.core.db import make_engine, session_scope
from trimloop.core.gateway import Gateway
from trimloop.core.settings import Settings
from trimloop.optimizer.run import create_run, execute_run
from trimloop.testing.fake_openai import free_port
from trimloop.testing.fake_provider import FakeProvider, fake_model

from tests.evals.health_seed import OPTIONS, seed_triage
from tests.optimizer.test_repair import follows_the_format
from tests.ui import seed
from tests.ui.test_browser import browser, login, page, shoot  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def repaired(engine: Any, settings: Settings) -> int:
    """A broken triage prompt and a repair run that suggests a fix; the suggestion's id."""
    prompt_id = seed_triage(engine, quality="broken", name="support-triage")
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=prompt_id, config={"repair": True}, budget_calls=1500).id

    async def execute() -> Any:
        async with Gateway(settings, engine=engine, provider=FakeProvider(responder=follows_the_format)) as gateway:
            return await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway)

    with ThreadPoolExecutor(1) as pool:  # its own thread: the caller may already run an event loop
        run = pool.submit(lambda: asyncio.run(execute())).result()
    assert run.results.suggestion_id is not None, (run.status, run.error, run.results.no_suggestion)
    return run.results.suggestion_id


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_databases: Any) -> Iterator[dict[str, Any]]:
    import uvicorn
    from trimloop.api.app import create_app

    tmp = tmp_path_factory.mktemp("ui-repair")
    url = test_databases.new(tmp / "ui-repair.db", migrated=True)
    engine = make_engine(url)
    settings = Settings(home=tmp / "home", api={"failed_logins_per_minute": 1000},
                        models={"fake/big": fake_model(50, 100), "fake/small": fake_model(5, 10)},
                        prompts={"support-triage": OPTIONS | {"rungs": [8, 24], "dataset_size": 200,
                                                              "holdout_fraction": 0.6, "models": ["fake/small"]}})
    repair = repaired(engine, settings)
    cost = seed.prompt_with_suggestions(engine, "billing-triage", 2)
    port = free_port()
    http = uvicorn.Server(uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port,
                                         log_level="warning", lifespan="on"))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not http.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http.started, "uvicorn did not start"
    yield {"base": f"http://127.0.0.1:{port}", "tokens": seed.tokens(engine), "repair": repair, "cost": cost}
    http.should_exit = True
    thread.join(10)
    engine.dispose()
    test_databases.drop(url, "tests/ui/test_browser_repair.py (module server)")


def test_the_queue_marks_a_repair_and_its_page_explains_it(page: Any, server: dict[str, Any]) -> None:  # noqa: F811
    login(page, server, "reviewer")
    cards = page.locator("li.card")
    assert cards.count() == 3
    first = cards.nth(0)
    assert "repair" in (first.get_attribute("class") or "")
    assert first.locator(".kind.repair").inner_text() == "Repair"
    assert first.get_by_role("link").inner_text() == "support-triage"
    facts = first.locator(".facts").inner_text()
    assert re.search(r"better on 1 of 1 evaluator: label \+0\.\d\d \(0\.0\d → 1\.00\)", facts), facts
    assert re.search(r"[+−]\d+ % per call", facts), facts
    assert page.locator("li.card .kind.repair").count() == 1  # the cost cuts are not marked
    shoot(page, "queue-repair")
    first.get_by_role("link", name="support-triage").click()
    page.wait_for_url(re.compile(rf"/ui/suggestions/{server['repair']}$"))
    assert page.locator("h1 .kind.repair").inner_text() == "Repair"
    assert "its health was broken" in page.locator("#repair-note").inner_text()
    assert page.get_by_role("heading", name=re.compile("better by at least δ = 0.05")).is_visible()
    assert "superior" in page.locator("table").first.inner_text()
    assert page.locator("svg.interval").count() == 1
    shoot(page, "suggestion-repair")
    page.get_by_role("button", name="Approve").click()
    assert "approved" in page.locator(".flash").inner_text()
