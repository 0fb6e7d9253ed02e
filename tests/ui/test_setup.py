"""The setup page: the doctor's findings for engineers and admins, escaped; refused to other roles."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.ui.conftest import sign_in


def test_engineers_see_every_section_with_levels_and_fixes(app_client: TestClient, seeded: dict) -> None:
    sign_in(app_client, seeded["tokens"]["engineer"])
    page = app_client.get("/ui/setup")
    assert page.status_code == 200
    html = page.text
    assert 'href="/ui/setup" aria-current="page">Setup</a>' in html
    for title in ("Configuration", "Database", "Allowed hosts", "Connectors", "Prices", "Bundled models", "Prompts"):
        assert f">{title} <span" in html, title
    # no connector configured: a problem with the lines to add, so the verdict is "not ready"
    assert 'data-code="connectors.none"' in html and "Not ready" in html
    assert 'fix: add one to trimloop.toml, e.g.\n[connectors.local]' in html
    assert 'class="finding level-ok" data-code="database.ok"' in html
    # a production version with no number in a store (trimloop wrote it) still counts as production
    assert "billing-triage: production version id " in html and "56 logs (56 of that version)" in html


def test_prompt_names_are_escaped_on_the_setup_page(app_client: TestClient, seeded: dict) -> None:
    sign_in(app_client, seeded["tokens"]["admin"])
    html = app_client.get("/ui/setup").text
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; {{7*7}}" in html


def test_other_roles_get_no_setup_link_and_a_refusal(app_client: TestClient, seeded: dict) -> None:
    for role in ("viewer", "reviewer"):
        sign_in(app_client, seeded["tokens"][role])
        assert 'href="/ui/setup"' not in app_client.get("/ui/").text
        refused = app_client.get("/ui/setup")
        assert refused.status_code == 403 and "may not see the setup checks" in refused.text
        assert 'data-code=' not in refused.text
        app_client.cookies.clear()
    assert app_client.get("/ui/setup").status_code == 303  # signed out: to the login form
