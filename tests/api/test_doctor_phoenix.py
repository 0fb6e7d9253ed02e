"""The doctor against a real Phoenix server seeded the way Phoenix's docs show (issue 20): an empty
configured project names the project that holds the spans; the minimal config counts what sync stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from trimloop.api.doctor import diagnose
from trimloop.core.settings import Settings

from tests.connectors.conftest import phoenix_server  # noqa: F401  (a module fixture used through `seeded`)
from tests.connectors.test_phoenix_docs_setup import seeded  # noqa: F401

pytestmark = pytest.mark.integration


def codes(settings: Settings, engine: Engine) -> dict[str, list]:
    out: dict[str, list] = {}
    for finding in diagnose(settings, engine=engine).findings:
        out.setdefault(finding.code, []).append(finding)
    return out


def test_doctor_names_the_project_with_the_spans_and_counts_them(
        seeded: tuple[str, dict[str, object]], engine: Engine, tmp_path: Path) -> None:  # noqa: F811
    url, _ = seeded
    pinned = Settings(home=tmp_path / "home", connectors={"px": {"type": "phoenix", "url": url, "project": "default"}})
    found = codes(pinned, engine)
    elsewhere = found["connector.looked_elsewhere"][0]
    assert elsewhere.message == (f"px (phoenix): {url} project 'default': holds no LLM spans; they are in project "
                                 "'support-bot': 3 LLM spans")
    assert elsewhere.fix.startswith('set project = "support-bot" under [connectors.px]')
    assert found["prompt.no_logs"][0].level == "problem"

    minimal = Settings(home=tmp_path / "home", connectors={"px": {"type": "phoenix", "url": url}})
    found = codes(minimal, engine)
    assert "3 would be stored (support-triage 3)" in found["connector.logs"][0].message
    assert "project 'support-bot': 3" in found["connector.logs"][0].message
    assert "connector.looked_elsewhere" not in found and "prompt.no_logs" not in found
