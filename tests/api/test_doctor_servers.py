"""The doctor against a real MLflow server seeded the way MLflow's docs show (issue 20): it names
where the traces are when the configured experiment is empty, and counts what the next sync stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from trimloop.api.doctor import diagnose
from trimloop.core.settings import Settings

from tests.connectors.conftest import mlflow_server  # noqa: F401  (a module fixture used through `seeded`)
from tests.connectors.test_mlflow_docs_setup import seeded  # noqa: F401

pytestmark = pytest.mark.integration


def codes(settings: Settings, engine: Engine) -> dict[str, list]:
    out: dict[str, list] = {}
    for finding in diagnose(settings, engine=engine).findings:
        out.setdefault(finding.code, []).append(finding)
    return out


def test_doctor_says_where_the_traces_are_and_what_sync_would_store(
        seeded: tuple[str, dict[str, object]], engine: Engine, tmp_path: Path) -> None:  # noqa: F811
    url, seed = seeded
    experiment = seed["experiment_id"]
    pinned = Settings(home=tmp_path / "home", connectors={"ml": {"type": "mlflow", "url": url, "experiment_ids": ["0"]}})
    found = codes(pinned, engine)
    elsewhere = found["connector.looked_elsewhere"][0]
    assert elsewhere.level == "warning"
    assert f"traces are in experiment 'support-bot' (id {experiment}): 3 traces" in elsewhere.message
    assert f'set experiment_ids = ["0", "{experiment}"] under [connectors.ml]' in elsewhere.fix
    assert found["prompt.no_logs"][0].level == "problem"  # support-triage: nothing reaches trimloop yet

    minimal = Settings(home=tmp_path / "home", connectors={"ml": {"type": "mlflow", "url": url}})  # the docs' config
    found = codes(minimal, engine)
    logs = found["connector.logs"][0].message
    assert "3 log records from the start; 3 would be stored (support-triage 3)" in logs
    assert f"experiment 'support-bot' (id {experiment}): 3" in logs
    assert "connector.looked_elsewhere" not in found and "prompt.no_logs" not in found
    assert "support-triage: 3 logged calls wait for the next sync" in found["prompt.not_synced"][0].message
    priced = {f.data["model"]: f for f in found["prices.known"]}
    assert priced["gpt-4o-mini"].data["source"] == "litellm price map (list price)"
