"""The mlflow connector against a real MLflow server: seed with MLflow's client, sync, check every
field, write a version back, and read it back through MLflow's own client with the alias moved."""

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
from trimloop.core.templates import Template

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


def mlflow_python(python: Path, url: str, code: str) -> str:
    """Run `code` with MLflow's own client (in the server's venv) and return its last output line."""
    result = subprocess.run([str(python), "-c", f"import mlflow; mlflow.set_tracking_uri({url!r})\n{code}"],
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_sync_write_back_and_promote_against_mlflow(mlflow_server: tuple[str, Path], engine: Engine) -> None:
    url, python = mlflow_server
    seeded = subprocess.run([str(python), str(HERE / "mlflow_seed.py"), url], capture_output=True,
                            text=True, timeout=180, check=True)
    trace_ids = json.loads(seeded.stdout.strip().splitlines()[-1])["trace_ids"]
    connector = MlflowConnector(name="ml", options={"url": url})

    report = sync_connector(engine=engine, connector=connector)
    assert report.fatal is None and report.skipped_total == 0, report.to_dict()
    assert (report.prompts_added, report.versions_added, report.logs_added) == (2, 3, 2)
    with engine.connect() as conn:
        versions = conn.execute(text(
            "select p.name, v.external_version, v.id, v.model, v.params, v.template from promptversion v "
            "join prompt p on p.id = v.prompt_id order by p.name, v.external_version")).all()
        logs = conn.execute(text(
            "select l.external_id, p.name, v.external_version, l.inputs, l.output, l.model, l.input_tokens, "
            "l.output_tokens, l.cost, l.latency_s, l.feedback, l.cached_input_tokens, l.reasoning_tokens "
            "from logrecord l join prompt p on p.id = l.prompt_id "
            "join promptversion v on v.id = l.version_id order by l.called_at")).all()
    labels = labels_by_version(engine)
    assert [(n, v, labels[vid], m, stored_json(p)) for n, v, vid, m, p, _ in versions] == [
        ("qa", "1", [], "openai/gpt-4o-mini", {"temperature": 0.2, "stop": ["\n"]}),
        ("triage", "1", ["production"], "gpt-4o-mini", {"temperature": 0.0, "max_tokens": 8}),
        ("triage", "2", [], "gpt-4o-mini", {"temperature": 0.0, "max_tokens": 8}),
    ]
    assert stored_json(versions[0][5]) == {"kind": "text", "text": "Q: {{question}}\nA:"}
    first, second = logs
    assert (*first[:3], stored_json(first[3]), *first[4:8]) == (
        trace_ids[0], "triage", "1", {"ticket": "I was charged twice"}, "billing", "gpt-4o-mini", 30, 1)
    assert first[8] > 0 and first[9] >= 0  # MLflow's own cost estimate and the trace duration
    assert stored_json(first[10]) == [{"name": "correct", "value": True, "source": "reviewer@example.com"}]
    assert second[0] == trace_ids[1] and stored_json(second[3]) == {"ticket": "The app crashes on start"}
    assert (first[11], first[12], second[11], second[12]) == (0, 0, 16, 0)  # from the response's usage

    again = sync_connector(engine=engine, connector=connector)
    assert (again.versions_added, again.logs_added, again.labels_changed) == (0, 0, 0)

    result = connector.write_version(prompt="triage", template=Template.chat(
        ("system", "Sort tickets: billing, bug, other."), ("user", "{{ticket}}")),
        model="gpt-4o-mini", params={"temperature": 0, "max_tokens": 4}, label="staging")
    assert result.created and result.external_version == "3"
    seen = mlflow_python(python, url, "p = mlflow.genai.load_prompt('prompts:/triage@staging'); "
                         "print(p.version, p.template[0]['content'], p.model_config['max_tokens'])")
    assert seen == "3 Sort tickets: billing, bug, other. 4"

    connector.move_label(prompt="triage", external_version="3", label="production")
    seen = mlflow_python(python, url, "print(mlflow.genai.load_prompt('prompts:/triage@production').version)")
    assert seen == "3"
    labels = sync_connector(engine=engine, connector=connector)
    assert labels.versions_added == 1 and labels.labels_changed == 1
    connector.close()
