"""Issue 20's must-show on Phoenix: an app set up as Phoenix's docs show
(`register(project_name="support-bot")` + the OpenInference OpenAI instrumentation) is found by the
documented minimal config, and an empty configured project says where the spans are, with counts
and the line to set."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import labels_by_version, stored_json
from trimloop.connectors.phoenix import PhoenixConnector
from trimloop.connectors.sync import sync_connector
from trimloop.testing import fake_openai

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
TICKETS = ["I was charged twice", "The app crashes on start", "How do I export my data?"]


@pytest.fixture(scope="module")
def seeded(phoenix_server: tuple[str, Path]) -> tuple[str, dict[str, object]]:
    """(url, {"span_ids", "version"}) once the app's calls are traced into project support-bot."""
    url, python = phoenix_server
    with fake_openai.running() as openai_url:
        done = subprocess.run([str(python), str(HERE / "phoenix_register_seed.py"), url, f"{openai_url}/v1"],
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return url, json.loads(done.stdout.strip().splitlines()[-1])


def test_the_documented_minimal_config_finds_matches_and_counts_the_spans(
        seeded: tuple[str, dict[str, object]], engine: Engine) -> None:
    url, seed = seeded
    with PhoenixConnector(name="px", options={"url": url}) as connector:  # the docs' [connectors.px]
        report = sync_connector(engine=engine, connector=connector)
    assert report.fatal is None and report.skipped_total == 0, report.to_dict()
    assert (report.prompts_added, report.versions_added, report.logs_added) == (1, 1, 3)
    assert "project 'support-bot': 3 read" in map(str, report.looked) and report.notices == []
    with engine.connect() as conn:
        logs = conn.execute(text(
            "select l.external_id, p.name, v.external_version, v.id, l.inputs, l.model from logrecord l "
            "join prompt p on p.id = l.prompt_id join promptversion v on v.id = l.version_id")).all()
    assert {log[0] for log in logs} == set(seed["span_ids"])  # type: ignore[arg-type]
    by_ticket = {stored_json(log[4])["ticket"]: log for log in logs}  # matched by the messages sent
    assert sorted(by_ticket) == sorted(TICKETS)
    labels = labels_by_version(engine)
    for log in logs:
        assert (log[1], log[2], labels[log[3]], log[5]) == (
            "support-triage", seed["version"], ["production"], "gpt-4o-mini")


def test_an_empty_configured_project_names_where_the_spans_are(
        seeded: tuple[str, dict[str, object]], engine: Engine) -> None:
    url, _ = seeded
    with PhoenixConnector(name="px", options={"url": url, "project": "default"}) as connector:
        report = sync_connector(engine=engine, connector=connector)
    assert report.fatal is None and report.logs_added == 0 and report.skipped_total == 0
    assert [str(x) for x in report.looked] == ["project 'default': 0 read"]
    [notice] = report.notices
    assert notice.where == f"{url} project 'default'"
    assert notice.message == "holds no LLM spans; they are in project 'support-bot': 3 LLM spans"
    assert notice.hint == ('set project = "support-bot" under [connectors.px], or remove project to read '
                           "every project")

    with PhoenixConnector(name="px", options={"url": url, "project": "support-bot"}) as connector:
        fixed = sync_connector(engine=engine, connector=connector)  # the line set: the spans come
    assert fixed.logs_added == 3 and fixed.notices == []
