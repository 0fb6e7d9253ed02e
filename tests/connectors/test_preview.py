"""preview_connector: what the next sync would store and skip, and why, writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine

from tests.connectors.helpers import dump_store, log_line, make_store, write_logs
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.preview import preview_connector
from trimloop.connectors.sync import sync_connector


def files(root: Path) -> FilesConnector:
    return FilesConnector(name="local", options={"path": str(root)})


def test_a_store_never_synced_is_judged_as_its_first_sync_would_and_nothing_is_written(
        engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    write_logs(root / "logs" / "calls.jsonl", [log_line(i) for i in range(4)] + [
        log_line(9, prompt="triag"), log_line(10, prompt="triag"), log_line(11, cost=None), "{not json"])
    before = dump_store(engine)
    seen = preview_connector(connector=files(root), engine=engine)
    assert dump_store(engine) == before  # no prompt, log or cursor written
    assert seen.error is None and not seen.from_cursor
    assert (seen.prompts["triage"].versions, seen.prompts["triage"].production, seen.prompts["triage"].model) == \
        (1, "1", "gpt-4o-mini")
    assert seen.matched == {"triage": 5} and seen.with_cost == {"triage": 4}
    assert seen.skipped == {"unknown_prompt": 2, "invalid_json": 1}
    assert "log refers to unknown prompt 'triag'" in seen.examples["unknown_prompt"].message
    assert seen.examples["unknown_prompt"].where.startswith("logs/calls.jsonl:")
    report = sync_connector(engine=engine, connector=files(root))  # the sync it foretold
    assert report.logs_added == 5 and report.skipped["unknown_prompt"] == 2
    assert sum(seen.skipped.values()) == report.skipped_total and seen.logs_read == 8  # 5 stored + 3 skipped


def test_after_a_sync_only_what_is_new_is_read_unless_full(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    write_logs(root / "logs" / "calls.jsonl", [log_line(i) for i in range(3)])
    sync_connector(engine=engine, connector=files(root))
    write_logs(root / "logs" / "calls.jsonl", [log_line(i) for i in range(3, 5)])
    seen = preview_connector(connector=files(root), engine=engine)
    assert seen.from_cursor and seen.logs_read == 2 and seen.matched == {"triage": 2}
    everything = preview_connector(connector=files(root), engine=engine, full=True)
    assert not everything.from_cursor and everything.logs_read == 5
    first_two = preview_connector(connector=files(root), engine=engine, full=True, max_logs=2)
    assert first_two.logs_read == 2 and first_two.stopped_after == 2


def test_without_a_database_the_connector_alone_is_judged(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    write_logs(root / "logs" / "calls.jsonl", [log_line(1), json.dumps({"id": "x", "called_at": "2025-06-01T00:00:00Z",
                                                                          "output": "bug"})])
    seen = preview_connector(connector=files(root))
    assert seen.matched == {"triage": 1} and seen.skipped == {"missing_field": 1}


def test_an_unreadable_store_is_the_error_not_an_exception(tmp_path: Path) -> None:
    seen = preview_connector(connector=files(tmp_path / "nowhere"))
    assert seen.error is not None and "nowhere" in str(seen.error)
