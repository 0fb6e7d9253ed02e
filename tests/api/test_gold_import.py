"""POST /datasets/import: a bad row is reported by its line and the rest kept; never a 500."""

from __future__ import annotations

import json

from tests.api.conftest import PROMPT_V1, synced
from trimloop.core.db import session_scope
from trimloop.core.tables import Prompt, PromptVersion

GOOD = json.dumps({"ticket": "charged twice", "label": "billing"})


def body(prompt_id: int, content: str, **extra: object) -> dict[str, object]:
    return {"prompt_id": prompt_id, "format": "jsonl", "content": content, "inputs": {"ticket": "ticket"},
            "expected": "label", **extra}


def test_unstorable_rows_are_problems_by_line_and_the_others_imported(client, headers, engine, settings):
    """A lone surrogate escape and a row nested 50,000 deep were 500s; now each is its line's problem."""
    prompt_id = synced(engine, settings)
    deep = '{"ticket": ' + "[" * 50_000 + "]" * 50_000 + ', "label": "billing"}'
    medium = '{"ticket": ' + "[" * 100 + "]" * 100 + ', "label": "billing"}'
    content = "\n".join([GOOD, '{"ticket": "\\ud800 broken", "label": "billing"}', deep, medium,
                         '{"ticket": "slow app", "label": "bug", "score": Infinity}',
                         json.dumps({"ticket": "crash", "label": "bug"})]) + "\n"
    response = client.post("/datasets/import", headers=headers["engineer"], json=body(prompt_id, content))
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["rows"] == 2
    assert [p.split(":")[0] for p in result["problems"]] == ["line 2", "line 3", "line 4", "line 5"]
    assert "\\ud800" in result["problems"][0] and "surrogate" in result["problems"][0]
    assert "nested" in result["problems"][1] and "nested more than 64" in result["problems"][2]
    assert "not finite" in result["problems"][3]


def test_errors_name_the_upload_not_a_server_path(client, headers, engine, settings):
    prompt_id = synced(engine, settings)
    response = client.post("/datasets/import", headers=headers["engineer"],
                           json=body(prompt_id, "not json\n", name="tickets"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["where"] == "upload tickets.jsonl" and "no valid rows in upload tickets.jsonl;" in error["message"]
    assert "/tmp" not in response.text and "tmp" not in error["where"]


def test_a_version_of_another_prompt_is_refused(client, headers, engine, settings, store_dir):
    (store_dir / "prompts" / "other").mkdir()
    (store_dir / "prompts" / "other" / "1.md").write_text(PROMPT_V1.replace("sort", "file"))
    prompt_id = synced(engine, settings)
    with session_scope(engine) as session:
        other = session.exec(__import__("sqlmodel").select(PromptVersion.id).join(Prompt).where(
            Prompt.name == "other")).one()
    response = client.post("/datasets/import", headers=headers["engineer"],
                           json=body(prompt_id, GOOD + "\n", version_id=other))
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["where"] == "gold set import: version_id"
    assert f"prompt 'triage' (id {prompt_id}) has no version with id {other}" in error["message"]
