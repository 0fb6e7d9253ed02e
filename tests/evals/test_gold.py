"""Importing gold sets from CSV and JSONL with a column mapping; bad rows reported by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trimloop.core.db import session_scope
from trimloop.core.errors import UserError
from trimloop.evals.datasets import dataset_items
from trimloop.evals.gold import ColumnMapping, import_file, read_rows

from tests.evals.helpers import add_prompt

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def test_jsonl_keeps_valid_rows_and_reports_bad_lines(tmp_path: Path, engine) -> None:
    path = tmp_path / "gold.jsonl"
    lines = [json.dumps({"review": f"film {i}", "label": "positive" if i % 2 else "negative"}) for i in range(20)]
    lines[3] = '{"review": "broken'
    lines[5] = json.dumps({"label": "positive"})
    lines[7] = "[1, 2]"
    lines[9] = lines[8]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    prompt = add_prompt(engine)
    mapping = ColumnMapping(inputs={"text": "review"}, expected="label")
    with session_scope(engine) as session:
        result = import_file(session, prompt_id=prompt, path=path, mapping=mapping, holdout_fraction=0.25)
        items = dataset_items(session, result.dataset.id)
    assert [(p.line, p.message.split(":")[0]) for p in result.problems] == [
        (4, "invalid JSON"), (6, "missing or empty column(s)"), (8, "expected a JSON object, got list"),
        (10, "duplicate inputs of line 9")]
    assert result.rows == len(items) == 16
    assert {i.split for i in items} == {"search", "holdout"}
    assert all(i.expected in ("positive", "negative") for i in items)


def test_csv_line_numbers_count_multiline_cells(tmp_path: Path) -> None:
    path = tmp_path / "gold.csv"
    path.write_text('text,label\n"two\nlines",positive\n,negative\nok,negative\n', encoding="utf-8")
    rows, problems = read_rows(path, ColumnMapping(inputs={"text": "text"}, expected="label"))
    assert [r.inputs["text"] for r in rows] == ["two\nlines", "ok"]
    assert [(p.line, p.message) for p in problems] == [(4, "missing or empty column(s): text")]


def test_unusable_files_are_refused(tmp_path: Path, engine) -> None:
    prompt = add_prompt(engine)
    bad = tmp_path / "x.xlsx"
    bad.write_text("")
    with session_scope(engine) as session:
        with pytest.raises(UserError, match="unsupported file type"):
            import_file(session, prompt_id=prompt, path=bad, mapping=ColumnMapping({"t": "t"}))
        empty = tmp_path / "e.jsonl"
        empty.write_text('{"other": 1}\n')
        with pytest.raises(UserError, match="no valid rows") as info:
            import_file(session, prompt_id=prompt, path=empty, mapping=ColumnMapping({"t": "t"}))
        assert "line 1" in info.value.message


def test_imports_the_real_e2e_extraction_fields(engine) -> None:
    source = SHARED / "e2e_extraction"
    if not source.exists():
        pytest.skip(f"shared datasets not found at {source}")
    path = next(p for p in sorted(source.iterdir()) if p.suffix in (".jsonl", ".csv"))
    prompt = add_prompt(engine)
    with session_scope(engine) as session:
        result = import_file(session, prompt_id=prompt, path=path, size=50, seed=2,
                             mapping=ColumnMapping(inputs={"text": "text"}, expected="fields"))
        items = dataset_items(session, result.dataset.id)
    assert len(items) == 50
    assert isinstance(json.loads(items[0].expected), dict)
