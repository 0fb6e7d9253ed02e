"""Builders for connector tests: a files-connector folder with prompts and logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

TRIAGE_V1 = """---
model: gpt-4o-mini
params: {temperature: 0, max_tokens: 8}
labels: [production]
---
system:
You sort support tickets into billing, bug or other.

user:
Ticket: {{ticket}}
"""


def stored_json(value: Any) -> Any:
    """A JSON column read with raw SQL: SQLite hands back its text, PostgreSQL the decoded value."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def labels_by_version(engine: Engine) -> dict[int, list[str]]:
    """Version id → the labels sitting on it (sorted), for every stored version."""
    from trimloop.core.store import version_labels

    with engine.connect() as conn:
        ids = [row[0] for row in conn.execute(text("select id from promptversion"))]
        return version_labels(session=conn, version_ids=ids)


def make_store(root: Path, prompts: dict[str, str] | None = None) -> Path:
    """A folder with prompts/<name>/<version>.md files and an empty logs/ folder."""
    for rel, body in (prompts if prompts is not None else {"triage/1.md": TRIAGE_V1}).items():
        path = root / "prompts" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    (root / "logs").mkdir(parents=True, exist_ok=True)
    return root


def log_line(i: int, **over: Any) -> str:
    record = {"id": f"call-{i}", "prompt": "triage", "version": "1", "inputs": {"ticket": f"t{i}"},
              "output": "billing", "model": "gpt-4o-mini", "input_tokens": 20, "output_tokens": 1,
              "cost": 0.00001, "latency_s": 0.2, "called_at": "2025-06-01T12:00:00Z",
              "feedback": [{"name": "thumbs_up", "value": 1, "source": "user"}]}
    record.update(over)
    return json.dumps(record)


def write_logs(path: Path, lines: list[str | bytes]) -> None:
    with path.open("ab") as handle:
        for line in lines:
            handle.write((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n")


def dump_store(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Everything sync writes, for comparing two stores."""
    queries = {
        "prompt": "select name, connector from prompt order by name",
        "version": "select p.name, v.sha, v.external_version from promptversion v "
                   "join prompt p on p.id = v.prompt_id order by v.sha",
        "label": "select p.name, l.label, v.sha from promptlabel l join prompt p on p.id = l.prompt_id "
                 "join promptversion v on v.id = l.version_id order by p.name, l.label",
        "log": "select connector, external_id, prompt_id, version_id, inputs, output, model, input_tokens, "
               "output_tokens, cost, latency_s, called_at, feedback, meta from logrecord order by external_id",
        "cursor": "select connector, stream, cursor from connectorcursor order by connector, stream",
    }
    with engine.connect() as conn:
        return {k: [tuple(r) for r in conn.execute(text(q))] for k, q in queries.items()}
