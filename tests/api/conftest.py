"""API fixtures: an app over a migrated SQLite database, a files prompt store, a token per role."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from trimloop.api.app import create_app
from trimloop.connectors.sync import sync
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.identity import version_identity
from trimloop.core.settings import Settings
from trimloop.core.tables import Prompt, PromptVersion, Suggestion

ROLES = ("viewer", "reviewer", "engineer", "admin", "ingest")
PROMPT_V1 = """---
model: big/model
params: {temperature: 0}
labels: [production]
---
system:
You sort support tickets into billing, bug or other. Please answer with exactly one word only.

user:
Ticket: {{ticket}}
"""


def write_logs(folder: Path, version: str, n: int, cost: float, start: datetime, name: str) -> None:
    lines = [json.dumps({"id": f"{name}-{i}", "prompt": "triage", "version": version,
                         "inputs": {"ticket": f"ticket {i}"}, "output": "billing", "model": "big/model",
                         "cost": cost, "latency_s": 0.2, "input_tokens": 30, "output_tokens": 1,
                         "called_at": (start + timedelta(minutes=i)).isoformat()}) for i in range(n)]
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    with (folder / "logs" / f"{name}.jsonl").open("a") as handle:
        handle.write("\n".join(lines) + "\n")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "prompt-store"
    (folder / "prompts" / "triage").mkdir(parents=True)
    (folder / "prompts" / "triage" / "1.md").write_text(PROMPT_V1)
    write_logs(folder, "1", 20, 0.002, datetime.now(timezone.utc) - timedelta(days=2), "before")
    return folder


@pytest.fixture
def settings(tmp_path: Path, store_dir: Path) -> Settings:
    return Settings(home=tmp_path / "home", connectors={"local": {"type": "files", "path": str(store_dir)}},
                    api={"failed_logins_per_minute": 1000})


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


@pytest.fixture
def headers(engine: Engine) -> dict[str, dict[str, str]]:
    """`Authorization` headers for one token of each role."""
    out = {}
    with session_scope(engine) as session:
        for role in ROLES:
            _, clear = store.create_token(session=session, name=f"{role}-1", role=role, actor="test")
            out[role] = {"Authorization": f"Bearer {clear}"}
    return out


def synced(engine: Engine, settings: Settings) -> int:
    """Sync the files store; the prompt id of `triage`."""
    reports = sync(engine=engine, settings=settings)
    assert not reports[0].fatal, reports[0].fatal
    with session_scope(engine) as session:
        return session.exec(__import__("sqlmodel").select(Prompt.id).where(Prompt.name == "triage")).one()


def make_suggestion(engine: Engine, prompt_id: int, *, savings: float = 100.0, **extra: Any) -> int:
    """What the optimizer leaves behind: a candidate version (a shorter system message) and a
    pending suggestion against the current production version."""
    with session_scope(engine) as session:
        baseline_id = store.production_version_id(session=session, prompt_id=prompt_id)
        baseline = session.get(PromptVersion, baseline_id)
        assert baseline is not None
        template = {"kind": "chat", "messages": [{"role": "system", "content": f"Sort tickets: billing, bug or other. ({savings})"},
                                 {"role": "user", "content": "Ticket: {{ticket}}"}]}
        sha = version_identity(template=template, model=baseline.model, params=baseline.params)
        version = PromptVersion(prompt_id=prompt_id, sha=sha, template=template, model=baseline.model,
                                params=baseline.params, connector="trimloop")
        session.add(version)
        session.flush()
        suggestion = Suggestion(prompt_id=prompt_id, baseline_version_id=baseline_id, candidate_version_id=version.id,
                                candidate_sha=sha, baseline_cost_per_call=0.002, candidate_cost_per_call=0.001,
                                projected_monthly_savings=savings, savings_low=savings * 0.8,
                                savings_high=savings * 1.2, optimization_spend=0.5,
                                evidence={"holdout_n": 60, "evaluators": {"exact": {"lower": -0.01, "verdict": "pass"}}},
                                **extra)
        session.add(suggestion)
        session.flush()
        return suggestion.id  # type: ignore[return-value]
