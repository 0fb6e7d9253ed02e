"""The UI in real headless Chromium (Debian's package, driven by Playwright) against uvicorn on a
loopback port, over a store (SQLite, or PostgreSQL in that pass) holding a suggestion the optimizer really made.

Screenshots at 1280 px and 390 px go to test-output/screenshots/ (not committed).
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trimloop.core.db import make_engine, session_scope
from trimloop.core.tables import Suggestion
from trimloop.testing.fake_openai import free_port

from tests.ui import seed

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
WIDTHS = {"wide": (1280, 900), "narrow": (390, 844)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_databases: Any) -> Iterator[dict[str, Any]]:
    """uvicorn serving create_app over a seeded database; the base URL, tokens and ids."""
    import uvicorn
    from trimloop.api.app import create_app

    tmp = tmp_path_factory.mktemp("ui")
    _, settings = seed.files_store(tmp)
    url = test_databases.new(tmp / "ui.db", migrated=True)
    engine = make_engine(url)
    run_id = seed.optimized(engine, settings)
    hostile = seed.prompt_with_suggestions(engine, seed.HOSTILE, 1)[0]
    triage = seed.prompt_with_suggestions(engine, "billing-triage", 3)
    with session_scope(engine) as session:
        real = session.exec(__import__("sqlmodel").select(Suggestion.id).where(Suggestion.run_id == run_id)).one()
    port = free_port()
    config = uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    http = uvicorn.Server(config)
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not http.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http.started, "uvicorn did not start"
    yield {"base": f"http://127.0.0.1:{port}", "tokens": seed.tokens(engine), "run": run_id, "real": real,
           "hostile": hostile, "triage": triage}
    http.should_exit = True
    thread.join(10)
    engine.dispose()
    test_databases.drop(url, "tests/ui/test_browser.py (module server)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium chromium-driver")
    from playwright import sync_api  # the dev extra
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


def login(page: Any, server: dict[str, Any], role: str, path: str = "/ui/") -> None:
    page.goto(server["base"] + path)
    page.get_by_label("API token").fill(server["tokens"][role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "/ui/login" not in page.url


def shoot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, (w, h) in WIDTHS.items():
        page.set_viewport_size({"width": w, "height": h})
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def projected_total(page: Any, server: dict[str, Any]) -> float:
    page.goto(server["base"] + "/ui/dashboard")
    return float(re.sub(r"[^\d.]", "", page.locator("#total-projected").inner_text().split("/")[0]))


def test_review_reject_approve_and_the_dashboard_changes(page: Any, server: dict[str, Any]) -> None:
    login(page, server, "reviewer")
    cards = page.locator("li.card")
    assert cards.count() == 5
    savings = [float(re.sub(r"[^\d.]", "", t)) for t in page.locator("li.card strong").all_inner_texts()]
    assert savings == sorted(savings, reverse=True)
    shoot(page, "queue")
    before = projected_total(page, server)
    shoot(page, "dashboard")

    page.goto(server["base"] + "/ui/")
    page.get_by_role("link", name="sentiment").click()
    assert page.get_by_role("heading", name=re.compile("non-inferior at margin")).is_visible()
    assert page.locator("svg.interval").count() >= 1 and page.locator("pre.diff del, pre.diff ins").count() >= 1
    shoot(page, "suggestion")
    page.get_by_role("button", name="Approve").click()
    assert "approved" in page.locator(".flash").inner_text()

    rejected = server["triage"][0]
    page.goto(f"{server['base']}/ui/suggestions/{rejected}")
    page.get_by_role("button", name="Reject").click()  # the browser refuses: reason is required
    assert page.url.endswith(f"/ui/suggestions/{rejected}")
    page.get_by_label("Reason for rejecting (required)").fill("drops the order id")
    page.get_by_role("button", name="Reject").click()
    assert "rejected" in page.locator(".flash").inner_text()
    page.goto(f"{server['base']}/ui/suggestions/{rejected}")
    assert "drops the order id" in page.locator(".history").inner_text()

    after = projected_total(page, server)
    assert after < before
    assert page.locator("#projected").get_by_text(f"#{rejected}", exact=True).count() == 0


def test_hostile_text_renders_as_plain_text(page: Any, server: dict[str, Any]) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    login(page, server, "viewer")
    for path in ("/ui/", f"/ui/suggestions/{server['hostile']}", "/ui/dashboard"):
        page.goto(server["base"] + path)
        assert page.get_by_text(seed.HOSTILE).filter(visible=True).count() >= 1, path
        assert page.locator("script:not([src])").count() == 0, path
    shoot(page, "hostile")
    assert dialogs == []


def test_every_control_is_labelled_and_works_by_keyboard(page: Any, server: dict[str, Any]) -> None:
    page.goto(server["base"] + "/ui/")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'token'")  # autofocus
    page.keyboard.type(server["tokens"]["reviewer"])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/$"))
    target = server["triage"][1]
    for _ in range(30):  # Tab to the card's link, then open it with Enter
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('href')") == f"/ui/suggestions/{target}":
            break
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(f"/ui/suggestions/{target}$"))
    page.get_by_label("Reason for rejecting (required)").focus()
    page.keyboard.type("keyboard only")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Reject"
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert "rejected" in page.locator(".flash").inner_text()
    for path in ("/ui/", f"/ui/suggestions/{server['triage'][2]}", "/ui/dashboard", "/ui/runs",
                 f"/ui/runs/{server['run']}"):
        page.goto(server["base"] + path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, textarea, select, button')]
            .filter(e => e.type !== 'hidden')
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML)""")
        assert unlabelled == [], (path, unlabelled)


def test_run_page_follows_the_event_stream(page: Any, server: dict[str, Any]) -> None:
    login(page, server, "engineer", f"/ui/runs/{server['run']}")
    page.wait_for_selector("#run[data-done=true]")
    assert int(page.locator("#tried").inner_text()) >= 1
    assert page.locator("#status").inner_text() == "succeeded"
    assert page.locator("#timeline li").count() > 3 and page.locator("#dots circle").count() >= 1
    shoot(page, "run")
    page.goto(server["base"] + "/ui/runs")
    shoot(page, "runs")


def test_engineer_deploys_what_a_reviewer_approved(page: Any, server: dict[str, Any]) -> None:
    login(page, server, "reviewer", f"/ui/suggestions/{server['triage'][2]}")
    assert page.get_by_role("button", name="Deploy to staging").count() == 0
    page.get_by_role("button", name="Approve").click()
    page.get_by_role("button", name="Sign out").click()
    login(page, server, "engineer", f"/ui/suggestions/{server['triage'][2]}")
    assert page.get_by_role("button", name="Approve").count() == 0
    page.get_by_role("button", name="Deploy to staging").click()
    assert "Could not deploy" in page.locator(".flash").inner_text()  # its connector is not configured
    page.goto(server["base"] + "/ui/login")
    shoot(page, "login-signed-in-redirect")


def test_engineer_opens_the_setup_page_from_the_menu(page: Any, server: dict[str, Any]) -> None:
    login(page, server, "engineer")
    page.get_by_role("link", name="Setup").click()
    page.wait_for_url(re.compile(r"/ui/setup$"))
    for title in ("Configuration", "Database", "Connectors", "Prices", "Prompts"):
        assert page.get_by_role("heading", name=re.compile(f"^{title}")).count() == 1, title
    assert page.locator(".finding.level-ok").count() >= 3
    assert "sentiment: production version 1 on local/gemma3-270m" in page.locator("[data-code='prompt.ready']").inner_text()
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # long paths wrap on a phone
    shoot(page, "setup")
