"""The prompt health pages in real headless Chromium against uvicorn: the Prompts page's health
column, and a broken prompt's health page with its numbers and per-day lines. Screenshots go to
test-output/screenshots/ (not committed)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from trimloop.core.db import make_engine
from trimloop.core.settings import Settings
from trimloop.testing.fake_openai import free_port

from tests.evals.health_seed import OPTIONS, seed_triage
from tests.ui import seed
from tests.ui.test_browser import browser, login, page, shoot  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_databases: Any) -> Iterator[dict[str, Any]]:
    """uvicorn over a store with a broken and a healthy triage prompt."""
    import uvicorn
    from trimloop.api.app import create_app

    tmp = tmp_path_factory.mktemp("ui-health")
    url = test_databases.new(tmp / "ui-health.db", migrated=True)
    engine = make_engine(url)
    broken = seed_triage(engine, quality="broken", name="support-triage")
    healthy = seed_triage(engine, quality="good", name="refund-triage", seed=5)
    settings = Settings(home=tmp / "home", api={"failed_logins_per_minute": 1000},
                        prompts={"support-triage": OPTIONS, "refund-triage": OPTIONS})
    port = free_port()
    http = uvicorn.Server(uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port,
                                         log_level="warning", lifespan="on"))
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not http.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http.started, "uvicorn did not start"
    yield {"base": f"http://127.0.0.1:{port}", "tokens": seed.tokens(engine), "broken": broken, "healthy": healthy}
    http.should_exit = True
    thread.join(10)
    engine.dispose()
    test_databases.drop(url, "tests/ui/test_browser_health.py (module server)")


def test_a_broken_prompt_shows_broken_with_its_numbers(page: Any, server: dict[str, Any]) -> None:  # noqa: F811
    login(page, server, "viewer")
    page.get_by_role("link", name="Prompts").click()
    page.wait_for_url(re.compile(r"/ui/prompts$"))
    assert page.locator("#prompts tbody tr").count() == 2
    page.get_by_role("link", name="support-triage").click()
    page.wait_for_url(re.compile(rf"/ui/prompts/{server['broken']}/health$"))
    assert page.locator("#verdict").inner_text() == "Broken"
    reasons = page.locator("#reasons").inner_text()
    assert re.search(r"agrees with reviewer labels on [\d.]+ % of 300 items; always answering the most common label "
                     r"\(billing\) would score \d+ %; \d+ % of answers name no label", reasons), reasons
    assert page.locator("svg.spark").count() >= 5 and page.locator("svg.spark circle").count() >= 12
    assert page.get_by_role("img", name=re.compile("evaluator:label per day")).count() == 1
    shoot(page, "prompt-health-broken")
    page.goto(f"{server['base']}/ui/prompts/{server['healthy']}/health")
    assert page.locator("#verdict").inner_text() == "Healthy"
    page.goto(server["base"] + "/ui/prompts")  # both checked now: the column shows both verdicts
    column = page.locator("#prompts tbody").inner_text()
    assert "Broken" in column and "Healthy" in column and "not checked" not in column
    shoot(page, "prompts")
    for path in ("/ui/prompts", f"/ui/prompts/{server['broken']}/health"):
        page.goto(server["base"] + path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, textarea, select, button')]
            .filter(e => e.type !== 'hidden')
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML)""")
        assert unlabelled == [], (path, unlabelled)
        assert page.locator("script:not([src])").count() == 0
