"""Issue 20's must-show on MLflow: an app set up as MLflow's docs show (`set_experiment`,
`openai.autolog` calling the fake OpenAI server, `log_feedback`, a registered prompt aliased
`production`) is found by the documented minimal config, and an empty configured experiment says
where the traces are, with counts and the line to add."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import labels_by_version, stored_json
from trimloop.connectors.mlflow import MlflowConnector
from trimloop.connectors.sync import sync_connector
from trimloop.testing import fake_openai

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
TICKETS = ["I was charged twice", "The app crashes on start", "How do I export my data?"]


@pytest.fixture(scope="module")
def seeded(mlflow_server: tuple[str, Path]) -> tuple[str, dict[str, object]]:
    """(url, {"experiment_id", "trace_ids"}) once the app's calls are traced and reviewed."""
    url, python = mlflow_server
    with fake_openai.running() as openai_url:
        done = subprocess.run([str(python), str(HERE / "mlflow_autolog_seed.py"), url, f"{openai_url}/v1"],
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return url, json.loads(done.stdout.strip().splitlines()[-1])


def test_the_documented_minimal_config_finds_matches_and_counts_the_traces(
        seeded: tuple[str, dict[str, object]], engine: Engine) -> None:
    url, seed = seeded
    with MlflowConnector(name="ml", options={"url": url}) as connector:  # the docs' [connectors.ml]
        report = sync_connector(engine=engine, connector=connector)
    assert report.fatal is None and report.skipped_total == 0, report.to_dict()
    assert (report.prompts_added, report.versions_added, report.logs_added) == (1, 1, 3)
    experiment = seed["experiment_id"]
    assert sorted(map(str, report.looked)) == sorted(["experiment 'Default' (id 0): 0 read",
                                                      f"experiment 'support-bot' (id {experiment}): 3 read"])
    assert report.notices == []
    with engine.connect() as conn:
        logs = conn.execute(text(
            "select l.external_id, p.name, v.external_version, v.id, l.inputs, l.model, l.input_tokens, "
            "l.feedback from logrecord l join prompt p on p.id = l.prompt_id "
            "join promptversion v on v.id = l.version_id order by l.called_at")).all()
    assert [log[0] for log in logs] == seed["trace_ids"]
    labels = labels_by_version(engine)
    for log, ticket in zip(logs, TICKETS):  # matched to the registered template by the messages sent
        assert (log[1], log[2], labels[log[3]], stored_json(log[4]), log[5]) == (
            "support-triage", "1", ["production"], {"ticket": ticket}, "gpt-4o-mini")
        assert log[6] > 0
        assert stored_json(log[7]) == [{"name": "correct", "value": True, "source": "reviewer@example.com"}]


def test_an_empty_configured_experiment_names_where_the_traces_are(
        seeded: tuple[str, dict[str, object]], engine: Engine) -> None:
    url, seed = seeded
    with MlflowConnector(name="ml", options={"url": url, "experiment_ids": ["0"]}) as connector:
        report = sync_connector(engine=engine, connector=connector)
    assert report.fatal is None and report.logs_added == 0 and report.skipped_total == 0
    assert [str(x) for x in report.looked] == ["experiment 'Default' (id 0): 0 read"]
    [notice] = report.notices
    experiment = seed["experiment_id"]
    assert notice.where == f"{url} experiment 'Default' (id 0)"
    assert notice.message == f"holds no traces; traces are in experiment 'support-bot' (id {experiment}): 3 traces"
    assert notice.hint == (f'set experiment_ids = ["0", "{experiment}"] under [connectors.ml], or remove '
                           "experiment_ids to read every experiment")
    assert str(notice) in report.to_dict()["notices"]

    with MlflowConnector(name="ml", options={"url": url, "experiment_ids": [str(experiment)]}) as connector:
        fixed = sync_connector(engine=engine, connector=connector)  # the line added: the traces come
    assert fixed.logs_added == 3 and fixed.notices == []
