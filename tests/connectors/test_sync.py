"""sync: idempotent, incremental, crash-safe; bad log lines reported with file:line and skipped."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from datetime import datetime, timezone

import pytest

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import (TRIAGE_V1, dump_store, labels_by_version, log_line, make_store, stored_json,
                                      write_logs)
from trimloop.connectors.base import Checkpoint, LogItem, Problem, PromptItem
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.sync import sync, sync_connector
from trimloop.core.settings import load_settings
from trimloop.core.tables import LogRecord
from trimloop.core.templates import Template
from sqlmodel import Session, select


def files(root: Path) -> FilesConnector:
    return FilesConnector(name="local", options={"path": str(root)})


def rows(engine: Engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_sync_stores_every_field_and_second_sync_adds_nothing(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl", [log_line(i) for i in range(3)])
    report = sync_connector(engine=engine, connector=files(root))
    assert (report.prompts_added, report.versions_added, report.logs_added) == (1, 1, 3)
    assert report.skipped_total == 0 and report.fatal is None
    log = rows(engine, "select external_id, inputs, output, model, input_tokens, output_tokens, cost, "
                       "latency_s, called_at, feedback, version_id from logrecord order by external_id")[0]
    assert stored_json(log[1]) == {"ticket": "t0"}
    assert (log[0], *log[2:8]) == ("call-0", "billing", "gpt-4o-mini", 20, 1, 0.00001, 0.2)
    assert str(log[8]).startswith("2025-06-01 12:00:00")
    assert stored_json(log[9]) == [{"name": "thumbs_up", "value": 1, "source": "user"}]
    assert list(labels_by_version(engine).values()) == [["production"]]
    with Session(engine) as session:  # the ORM reads what the bulk path wrote
        record = session.exec(select(LogRecord).where(LogRecord.external_id == "call-0")).one()
        assert record.inputs == {"ticket": "t0"} and record.feedback[0]["source"] == "user"
        assert record.called_at == datetime(2025, 6, 1, 12, tzinfo=timezone.utc)
    before = dump_store(engine)
    again = sync_connector(engine=engine, connector=files(root))
    assert (again.prompts_added, again.versions_added, again.logs_added, again.labels_changed) == (0, 0, 0, 0)
    assert dump_store(engine) == before
    full = sync_connector(engine=engine, connector=files(root), full=True)
    assert (full.logs_added, full.logs_already_synced) == (0, 3)


def test_sync_is_incremental_from_the_cursor(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    log = root / "logs" / "calls.jsonl"
    write_logs(log, [log_line(i) for i in range(2)])
    sync_connector(engine=engine, connector=files(root))
    write_logs(log, [log_line(i) for i in range(2, 5)])
    report = sync_connector(engine=engine, connector=files(root))
    assert (report.logs_added, report.logs_already_synced) == (3, 0)  # old lines not reread


def test_bad_lines_are_reported_and_good_ones_around_them_kept(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl", [
        log_line(1),
        "{not json",
        b'{"id": "x", "ticket": "\xff\xfe"}',
        "[1, 2]",
        log_line(2, input_tokens="many"),
        log_line(3, called_at=None) .replace('"called_at": null, ', ""),
        json.dumps({"id": "c4", "prompt": "triage", "called_at": "2025-01-01T00:00:00Z"}),
        log_line(5, prompt="no-such-prompt"),
        log_line(6, version="7"),
        log_line(7, colour="red"),
        "",
        log_line(8),
    ])
    report = sync_connector(engine=engine, connector=files(root))
    assert report.logs_added == 2
    assert report.skipped == {"invalid_json": 1, "not_utf8": 1, "wrong_type": 3, "missing_field": 2,
                              "unknown_prompt": 1, "unknown_version": 1}
    where = {p.where: p.message for p in report.problems}
    assert "invalid JSON" in where["logs/calls.jsonl:2"]
    assert "not UTF-8" in where["logs/calls.jsonl:3"]
    assert "input_tokens" in where["logs/calls.jsonl:5"]
    assert "called_at" in where["logs/calls.jsonl:6"]
    assert "'no-such-prompt'" in where["logs/calls.jsonl:8"]
    assert "unknown field" in where["logs/calls.jsonl:10"]
    assert rows(engine, "select external_id from logrecord order by external_id") == [("call-1",), ("call-8",)]


def test_openai_shape_recovers_prompt_version_and_inputs(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    messages = [{"role": "system", "content": "You sort support tickets into billing, bug or other."},
                {"role": "user", "content": "Ticket: card declined"}]
    record = {"request": {"model": "gpt-4o-mini", "messages": messages, "temperature": 0},
              "response": {"id": "chatcmpl-9", "object": "chat.completion", "created": 1717243200,
                           "model": "gpt-4o-mini-2024-07-18",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "billing"},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 31, "completion_tokens": 1, "total_tokens": 32}},
              "latency_s": 0.3}
    stranger = json.loads(json.dumps(record))
    stranger["response"]["id"] = "chatcmpl-10"
    stranger["request"]["messages"] = [{"role": "user", "content": "something else"}]
    write_logs(root / "logs" / "openai.jsonl", [json.dumps(record), json.dumps(stranger)])
    report = sync_connector(engine=engine, connector=files(root))
    assert report.logs_added == 1 and report.skipped == {"no_prompt": 1}
    got = rows(engine, "select external_id, inputs, output, model, input_tokens, output_tokens, version_id, "
                       "meta from logrecord")
    assert [(*r[:1], stored_json(r[1]), *r[2:7], stored_json(r[7])) for r in got] == [
        ("chatcmpl-9", {"ticket": "card declined"}, "billing", "gpt-4o-mini-2024-07-18", 31, 1, 1,
         {"finish_reason": "stop"})]


def test_labels_in_store_follow_the_connector(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    sync_connector(engine=engine, connector=files(root))
    files(root).write_version(prompt="triage", template=Template.plain("{{ticket}}"), model="m",
                              params={}, label="staging")
    files(root).move_label(prompt="triage", external_version="2", label="production")
    report = sync_connector(engine=engine, connector=files(root))
    assert report.versions_added == 1 and report.labels_changed == 1
    labels = labels_by_version(engine)
    assert [(v, labels[vid]) for vid, v in rows(engine, "select id, external_version from promptversion order by id")] == [
        ("1", []), ("2", ["production", "staging"])]


def test_a_damaged_prompt_file_does_not_strip_labels(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path, {"triage/1.md": TRIAGE_V1, "triage/2.md": TRIAGE_V1.replace("{{ticket}}", "{{x}}")})
    sync_connector(engine=engine, connector=files(root))
    (root / "prompts/triage/2.md").write_text("---\nmodel: [\n---\n", encoding="utf-8")
    report = sync_connector(engine=engine, connector=files(root))
    assert report.skipped == {"bad_prompt_file": 1} and report.labels_changed == 0


def test_a_label_longer_than_the_store_keeps_is_a_problem_not_a_failed_sync(engine: Engine, tmp_path: Path) -> None:
    long = "x" * 201
    root = make_store(tmp_path, {"triage/1.md": TRIAGE_V1.replace("labels: [production]", f"labels: [{long}]")})
    report = sync_connector(engine=engine, connector=files(root))
    assert report.fatal is None and report.skipped == {"too_long": 1} and report.versions_added == 0
    [problem] = report.problems
    assert problem.where == "prompts/triage/1.md" and "the label is 201 characters long" in problem.message


class TwoProduction(FilesConnector):
    """A store that reports one label on two versions of a prompt (files itself refuses to)."""

    def read_prompts(self) -> Iterator[PromptItem | Problem]:
        for item in super().read_prompts():
            yield item
            if isinstance(item, PromptItem):
                yield dataclasses.replace(item, template=Template.plain("{{ticket}}?"), external_version="2")


def test_a_label_on_two_versions_goes_to_the_newer_one(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    report = sync_connector(engine=engine, connector=TwoProduction(name="local", options={"path": str(root)}))
    assert report.versions_added == 2 and report.labels_changed == 0
    labels = labels_by_version(engine)
    assert [(v, labels[vid]) for vid, v in rows(engine, "select id, external_version from promptversion order by id")] == [
        ("1", []), ("2", ["production"])]


class Crashing(FilesConnector):
    """Dies (like a killed process) after yielding `after` items of the log stream."""

    after = 2500

    def read_logs(self, *, cursor: str | None) -> Iterator[LogItem | Problem | Checkpoint]:
        for n, item in enumerate(super().read_logs(cursor=cursor)):
            if n == self.after:
                raise KeyboardInterrupt
            yield item


def test_a_crash_midway_then_rerun_gives_the_same_store(engine: Engine, tmp_path: Path,
                                                        make_db_url: Callable[..., str]) -> None:
    root = make_store(tmp_path / "store")
    write_logs(root / "logs" / "a.jsonl", [log_line(i) for i in range(3000)])
    write_logs(root / "logs" / "b.jsonl", [log_line(i + 5000) for i in range(1200)])
    crashing = Crashing(name="local", options={"path": str(root)})
    try:
        sync_connector(engine=engine, connector=crashing, batch_size=1000)
    except KeyboardInterrupt:
        pass
    assert rows(engine, "select count(*) from logrecord") == [(2000,)]  # committed batches only
    sync_connector(engine=engine, connector=files(root), batch_size=1000)

    from trimloop.core.db import make_engine

    clean = make_engine(make_db_url(migrated=True))
    sync_connector(engine=clean, connector=files(root), batch_size=1000)
    assert dump_store(engine) == dump_store(clean)
    # 4,200 calls of one version on one day: all counted, about 2,000 full records kept (the same ones)
    [(stored,)] = rows(engine, "select count(*) from logrecord")
    assert rows(engine, "select sum(records), sum(dropped) from trafficaggregate") == [(4200, 4200 - stored)]
    assert 2000 <= stored <= 2000 + 2000 // 10 + 1
    clean.dispose()


def test_long_records_cut_a_batch_short(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch is written at batch_size records or once their text reaches BATCH_TEXT_CHARS, so a
    sync of long records (big RAG contexts) holds a bounded amount in memory."""
    sync_module = importlib.import_module("trimloop.connectors.sync")  # the package exports `sync`, a function
    files_module = importlib.import_module("trimloop.connectors.files")
    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl",
               [log_line(i, inputs={"ticket": "x" * 700}, output="y" * 300) for i in range(30)])
    monkeypatch.setattr(sync_module, "BATCH_TEXT_CHARS", 2500)  # three records of ~1,000 characters
    monkeypatch.setattr(files_module, "CHECKPOINT_EVERY", 1)  # a batch ends at a checkpoint (every 1,000 lines)
    written: list[int] = []
    write_batch = sync_module._write_batch
    monkeypatch.setattr(sync_module, "_write_batch",
                        lambda engine, connector, rows, *rest: written.append(len(rows)) or write_batch(
                            engine, connector, rows, *rest))
    report = sync_connector(engine=engine, connector=files(root), batch_size=1000)
    assert report.logs_added == 30 and report.skipped_total == 0
    assert written == [3] * 10 + [0]  # the last write moves the cursor past the end
    assert rows(engine, "select count(*) from logrecord") == [(30,)]


def test_a_line_still_being_written_waits_for_the_next_sync(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    log = root / "logs" / "calls.jsonl"
    write_logs(log, [log_line(1)])
    with log.open("a", encoding="utf-8") as handle:
        handle.write(log_line(2)[:30])
    assert sync_connector(engine=engine, connector=files(root)).logs_added == 1
    with log.open("a", encoding="utf-8") as handle:
        handle.write(log_line(2)[30:] + "\n")
    report = sync_connector(engine=engine, connector=files(root))
    assert report.logs_added == 1 and report.skipped_total == 0


def test_sync_from_settings_reports_a_missing_folder(engine: Engine, tmp_path: Path) -> None:
    settings = load_settings(connectors={"local": {"type": "files", "path": str(tmp_path / "nope")}})
    [report] = sync(engine=engine, settings=settings)
    assert report.fatal is not None and "does not exist" in report.fatal


KILLABLE = """
import sys
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core.db import make_engine
sync_connector(engine=make_engine(sys.argv[1]), connector=FilesConnector(name="local", options={"path": sys.argv[2]}),
               batch_size=500)
"""


def test_a_sync_killed_with_sigkill_resumes_to_the_same_store(engine: Engine, tmp_path: Path,
                                                              make_db_url: Callable[..., str]) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = make_store(tmp_path / "store")
    write_logs(root / "logs" / "a.jsonl", [log_line(i) for i in range(40000)])
    sync_connector(engine=engine, connector=files(root), batch_size=500)  # the expected store
    expected = dump_store(engine)
    from trimloop.core.db import make_engine

    url = make_db_url(migrated=True)
    killed = make_engine(url)
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, url, str(root)],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if rows(killed, "select count(*) from logrecord")[0][0] >= 1000:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = rows(killed, "select count(*) from logrecord")[0][0]
    assert 0 < partial < 40000  # killed midway, after some committed batches
    report = sync_connector(engine=killed, connector=files(root), batch_size=500)
    assert report.logs_added == 40000 - partial and report.logs_already_synced <= 500
    assert dump_store(killed) == expected
    killed.dispose()


def test_names_longer_than_the_store_keeps_are_skipped_with_a_problem(engine: Engine, tmp_path: Path) -> None:
    """PostgreSQL refuses a model name past its VARCHAR(200) (failing the whole batch) where SQLite
    would keep it: sync checks first, so both backends skip just that record and say why."""
    long_model = "acme/" + "m" * 300
    root = make_store(tmp_path, {"triage/1.md": TRIAGE_V1, "other/1.md": TRIAGE_V1.replace("gpt-4o-mini", long_model)})
    too_long = json.loads(log_line(2))
    too_long["model"] = long_model
    write_logs(root / "logs" / "calls.jsonl", [log_line(1), json.dumps(too_long), log_line(3)])
    report = sync_connector(engine=engine, connector=files(root))
    assert report.fatal is None and report.skipped == {"too_long": 2}, report.to_dict()
    assert (report.prompts_added, report.versions_added, report.logs_added) == (1, 1, 2)
    where = sorted(p.where for p in report.problems)
    assert where == ["logs/calls.jsonl:2", "prompts/other/1.md"], report.problems
    assert all("at most 200" in p.message and p.hint for p in report.problems)


def test_a_nul_line_is_a_problem_and_log_sync_moves_on(engine: Engine, tmp_path: Path) -> None:
    """PostgreSQL refuses NUL in text and JSON, and with it the whole batch: before, one such line
    stored nothing, left the cursor where it was and failed every later sync the same way."""
    root = make_store(tmp_path, {"triage/1.md": TRIAGE_V1, "nul/1.md": TRIAGE_V1.replace("billing", "bill\x00ing")})
    write_logs(root / "logs" / "calls.jsonl", [
        log_line(1), log_line(2, inputs={"ticket": "t\u0000"}), log_line(3, meta={"a": [{"b": "\u0000"}]}),
        log_line(4, feedback=[{"name": "note", "value": "x\u0000"}]), log_line(5)])
    first = sync_connector(engine=engine, connector=files(root))
    assert first.fatal is None and first.logs_added == 2 and first.skipped == {"nul_character": 4}
    assert sorted(p.where for p in first.problems) == [
        "logs/calls.jsonl:2", "logs/calls.jsonl:3", "logs/calls.jsonl:4", "prompts/nul/1.md"]
    assert {p.message.split(" contains")[0] for p in first.problems} == {
        "inputs.ticket", "meta.a[0].b", "feedback[0].value", "template.messages[0].content"}
    write_logs(root / "logs" / "calls.jsonl", [log_line(6)])
    second = sync_connector(engine=engine, connector=files(root))  # the cursor moved past the bad lines
    assert second.fatal is None and second.logs_added == 1 and second.skipped == {"nul_character": 1}
    assert rows(engine, "select external_id from logrecord order by external_id") == [
        ("call-1",), ("call-5",), ("call-6",)]


def test_non_finite_and_out_of_bound_numbers_are_problems(engine: Engine, tmp_path: Path) -> None:
    """One "cost": Infinity (or two of 1e308) made every spend sum infinite: the finance report
    failed for everyone. Costs past $1,000 a call, latencies past a day and non-finite numbers
    anywhere in a record are refused, naming the field and line."""
    root = make_store(tmp_path)
    lines = [log_line(1), log_line(2, cost=1e308), log_line(3, cost=1e308), log_line(4, latency_s=86_401),
             log_line(5, meta={"score": float("nan")}), log_line(6, cost=999.0)]
    write_logs(root / "logs" / "calls.jsonl", lines
               + [log_line(7).replace('"cost": 1e-05', '"cost": Infinity')])
    report = sync_connector(engine=engine, connector=files(root))
    assert report.fatal is None and report.logs_added == 2 and report.skipped == {"out_of_range": 5}
    assert [(p.where, p.message.split(";")[0]) for p in report.problems] == [
        ("logs/calls.jsonl:2", "cost is 1e+308"), ("logs/calls.jsonl:3", "cost is 1e+308"),
        ("logs/calls.jsonl:4", "latency_s is 86401"),
        ("logs/calls.jsonl:5", "meta.score is not a finite number (Infinity or NaN)"),
        ("logs/calls.jsonl:7", "cost is inf")]
    assert rows(engine, "select sum(cost) from logrecord") == [(pytest.approx(999.00001),)]


def test_a_symlinked_log_folder_is_reported_not_skipped_silently(engine: Engine, tmp_path: Path) -> None:
    """Links are not followed (one could lead out of the folder, or loop), but saying nothing left
    a team wondering where its logs went."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_logs(outside / "more.jsonl", [log_line(9)])
    root = make_store(tmp_path / "store")
    (root / "logs" / "2025").mkdir()
    write_logs(root / "logs" / "2025" / "june.jsonl", [log_line(1)])
    os.symlink(outside, root / "logs" / "linked")
    os.symlink(root / "logs" / "2025", root / "logs" / "loop")
    report = sync_connector(engine=engine, connector=files(root))
    assert report.logs_added == 1 and report.skipped == {"outside_folder": 2}
    assert [(p.where, p.message) for p in report.problems] == [
        ("logs/linked", "log folder is a symlink; links are not followed"),
        ("logs/loop", "log folder is a symlink; links are not followed")]


def test_a_reused_id_with_other_content_is_a_conflict_not_already_synced(engine: Engine, tmp_path: Path) -> None:
    """The same call sent twice is "already synced"; a different call under a stored id was counted
    the same way and lost without a word. Now it is a problem naming the id, the line and what differs."""
    root = make_store(tmp_path)
    write_logs(root / "logs" / "a.jsonl", [log_line(1), log_line(2), log_line(2, output="bug"),
                                          log_line(2)])
    first = sync_connector(engine=engine, connector=files(root))
    assert (first.logs_added, first.logs_already_synced) == (2, 1)
    assert [(p.where, p.reason) for p in first.problems] == [("logs/a.jsonl:3", "conflicting_duplicate")]
    assert "id 'call-2' is already stored for another call (different output)" in first.problems[0].message
    write_logs(root / "logs" / "b.jsonl", [log_line(1), log_line(1, inputs={"ticket": "other"},
                                                                  called_at="2025-06-02T00:00:00Z")])
    again = sync_connector(engine=engine, connector=files(root))
    assert (again.logs_added, again.logs_already_synced) == (0, 1)
    assert [(p.where, p.message.split("(")[1].split(")")[0]) for p in again.problems] == [
        ("logs/b.jsonl:2", "different called_at, inputs")]
    full = sync_connector(engine=engine, connector=files(root), full=True)
    assert full.logs_added == 0 and full.skipped == {"conflicting_duplicate": 2}
    assert full.logs_already_synced == 4


def test_two_ids_with_the_same_identity_key_are_a_reported_collision(engine: Engine, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Records are unique on a 64-bit hash of (connector, id). Two ids under one key (forced here;
    about one chance in 10^12 in a store of a few million) keep the first and report the second by
    line, not count it as already synced."""
    from trimloop.core import traffic

    real = traffic.record_key
    monkeypatch.setattr(traffic, "record_key",
                        lambda connector, eid: real(connector, "call-1" if eid == "call-2" else eid))
    root = make_store(tmp_path)
    write_logs(root / "logs" / "a.jsonl", [log_line(1), log_line(2, called_at="2025-06-02T00:00:00Z")])
    report = sync_connector(engine=engine, connector=files(root))
    assert (report.logs_added, report.logs_already_synced) == (1, 0)
    assert [(p.where, p.reason) for p in report.problems] == [("logs/a.jsonl:2", "identity_collision")]
    assert "id 'call-2' has the same 64-bit identity key as the stored record 'call-1'" in report.problems[0].message
    assert rows(engine, "select external_id from logrecord") == [("call-1",)]


def test_two_first_syncs_of_a_new_store_at_once_both_succeed(engine: Engine, tmp_path: Path) -> None:
    """The second of two concurrent first syncs died with an unhandled IntegrityError (the prompt
    was inserted under it). Here the other sync runs to its commit just as this one inserts."""
    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl", [log_line(i) for i in range(3)])
    other: list = []

    def the_other_sync_first(conn, cursor, statement, *_):  # type: ignore[no-untyped-def]
        if not other and statement.lstrip().lower().startswith("insert into prompt "):
            other.append(None)
            thread = threading.Thread(target=lambda: other.append(sync_connector(engine=engine, connector=files(root))))
            thread.start()
            thread.join()

    event.listen(engine, "before_cursor_execute", the_other_sync_first)
    try:
        mine = sync_connector(engine=engine, connector=files(root))
    finally:
        event.remove(engine, "before_cursor_execute", the_other_sync_first)
    theirs = other[1]
    assert theirs.fatal is None and (theirs.prompts_added, theirs.versions_added, theirs.logs_added) == (1, 1, 3)
    assert mine.fatal is None and (mine.prompts_added, mine.versions_added, mine.logs_added) == (0, 0, 0)
    assert mine.problems == [] and theirs.problems == []
    assert rows(engine, "select count(*) from prompt") == [(1,)]
    assert rows(engine, "select count(*) from logrecord") == [(3,)]


class Untyped(FilesConnector):
    """A source that hands over whatever its API returned: a cost as text, tokens past 32 bits."""

    def read_logs(self, *, cursor: str | None) -> Iterator[LogItem | Problem | Checkpoint]:
        at = datetime(2025, 6, 1, tzinfo=timezone.utc)
        base = {"called_at": at, "prompt": "triage", "version": "1", "inputs": {"ticket": "t"}}
        yield LogItem(external_id="ok", cost=0.5, input_tokens=20, **base)  # type: ignore[arg-type]
        yield LogItem(external_id="text", cost="0.5", **base)  # type: ignore[arg-type]
        yield LogItem(external_id="huge", input_tokens=2**40, **base)  # type: ignore[arg-type]
        yield LogItem(external_id="float", output_tokens=1.5, **base)  # type: ignore[arg-type]
        yield Checkpoint("{}")


def test_numbers_of_the_wrong_type_from_any_connector_are_problems(engine: Engine, tmp_path: Path) -> None:
    """The bounds hold for every connector, not only the files one's validator: SQLite stored a
    cost as text and tokens as 1.5, and tokens past 32 bits failed the whole PostgreSQL batch."""
    root = make_store(tmp_path)
    report = sync_connector(engine=engine, connector=Untyped(name="local", options={"path": str(root)}))
    assert report.fatal is None and report.logs_added == 1 and report.skipped == {"out_of_range": 3}
    assert [p.where + ": " + p.message.split(";")[0] for p in report.problems] == [
        "text: cost is '0.5'", f"huge: input_tokens is {2**40}", "float: output_tokens is 1.5"]
