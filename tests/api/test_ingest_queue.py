"""The receiver's writer (`api.routes.otlp.IngestQueue`) stores the batches waiting together, in one
transaction, and a failing group falls back to one batch at a time; `connectors.sync.store_logs`
counts each push in its own report and a record in two pushes once."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import make_store
from trimloop.api.routes.otlp import GROUP_SPANS, IngestQueue
from trimloop.connectors.base import LogItem
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.sync import PushedLogs, SyncReport, prepare_logs, store_logs, sync_connector
from trimloop.core.settings import Settings


def pushed(n: int, name: str = "") -> PushedLogs:
    return PushedLogs(rows=[(LogItem(external_id=f"{name}{i}", called_at=datetime.now(timezone.utc)), 1, 1, {})
                            for i in range(n)], report=SyncReport(connector=name or "otlp"))


class Writer:
    """A store that records each group it is given; the first call waits until `go` is set, so the
    next batches queue up behind it; batches named in `bad` make any group holding them fail."""

    def __init__(self, bad: frozenset[str] = frozenset(), error: type[BaseException] = RuntimeError):
        self.groups: list[list[str]] = []
        self.go, self.first = threading.Event(), True
        self.bad, self.error = bad, error

    def __call__(self, group: list[PushedLogs]) -> None:
        if self.first:
            self.first = False
            assert self.go.wait(10)
        names = [p.report.connector for p in group]
        self.groups.append(names)
        if self.bad & set(names):
            raise self.error(f"cannot store {sorted(self.bad & set(names))}")


def write_all(queue: IngestQueue, writer: Writer, batches: list[PushedLogs]) -> dict[str, BaseException | None]:
    """The first batch is written while the others arrive; then they are let through."""
    outcome: dict[str, BaseException | None] = {}

    def send(p: PushedLogs) -> None:
        try:
            queue.write(p, writer)
            outcome[p.report.connector] = None
        except BaseException as exc:  # noqa: BLE001 - what the request would see
            outcome[p.report.connector] = exc

    threads = [threading.Thread(target=send, args=(batches[0],))]
    threads[0].start()
    while writer.first:  # the first batch holds the writer
        threading.Event().wait(0.001)
    for p in batches[1:]:
        threads.append(threading.Thread(target=send, args=(p,)))
        threads[-1].start()
    while len(queue._waiting) < len(batches) - 1:  # every other batch waits
        threading.Event().wait(0.001)
    writer.go.set()
    for thread in threads:
        thread.join(10)
    return outcome


def test_batches_waiting_for_the_writer_are_stored_together_in_arrival_order() -> None:
    writer = Writer()
    outcome = write_all(IngestQueue(64), writer, [pushed(10, n) for n in "abcd"])
    assert writer.groups == [["a"], ["b", "c", "d"]]
    assert outcome == dict.fromkeys("abcd")


def test_a_group_stays_under_group_spans() -> None:
    writer = Writer()
    half = GROUP_SPANS // 2
    write_all(IngestQueue(64), writer, [pushed(10, "a"), pushed(half, "b"), pushed(half, "c"), pushed(1, "d")])
    assert writer.groups == [["a"], ["b", "c"], ["d"]]


def test_a_failing_group_is_retried_batch_by_batch_and_only_the_bad_one_fails() -> None:
    writer = Writer(bad=frozenset("c"))
    outcome = write_all(IngestQueue(64), writer, [pushed(10, n) for n in "abcd"])
    assert writer.groups == [["a"], ["b", "c", "d"], ["b"], ["c"], ["d"]]
    assert outcome["a"] is None and outcome["b"] is None and outcome["d"] is None
    assert isinstance(outcome["c"], RuntimeError)


def test_pushes_stored_together_count_apart_and_a_shared_record_once(engine: Engine, tmp_path: Path) -> None:
    report = sync_connector(engine=engine, connector=FilesConnector(name="local", options={
        "path": str(make_store(tmp_path / "store"))}))
    assert report.versions_added == 1
    at = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)

    def item(i: int, **over) -> LogItem:
        return LogItem(**{"external_id": f"t:{i}", "called_at": at, "prompt": "triage", "version": "1",
                          "inputs": {"ticket": f"t{i}"}, "output": "billing", "model": "gpt-4o-mini",
                          "input_tokens": 20, "output_tokens": 1, "latency_s": 0.2, **over})

    settings = Settings()
    first = prepare_logs(engine=engine, source="otlp", items=[item(1), item(2), item(3)], settings=settings)
    second = prepare_logs(engine=engine, source="otlp", items=[item(3), item(4), item(5, prompt="nope")],
                          settings=settings)
    assert len(first) == 3 and len(second) == 2 and second.report.skipped_total == 1  # unknown prompt
    store_logs(engine=engine, source="otlp", pushed=[first, second], settings=settings)
    assert (first.report.logs_added, first.report.logs_already_synced) == (3, 0)
    assert (second.report.logs_added, second.report.logs_already_synced) == (1, 1)  # t:3 came in `first`
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from logrecord where connector = 'otlp'")).scalar() == 4
        assert conn.execute(text("select sum(calls), sum(records) from trafficaggregate")).one() == (4, 4)


def test_a_writer_stopped_mid_group_acknowledges_none_of_the_batches_it_took() -> None:
    writer = Writer(bad=frozenset("c"), error=KeyboardInterrupt)  # the writing thread is interrupted
    outcome = write_all(IngestQueue(64), writer, [pushed(10, n) for n in "abcd"])
    assert writer.groups == [["a"], ["b", "c", "d"]]  # no batch retried alone: the thread is stopping
    assert outcome["a"] is None
    assert sorted(type(outcome[n]).__name__ for n in "bcd") == ["KeyboardInterrupt", "RuntimeError", "RuntimeError"]


def test_no_pooled_sqlite_connection_keeps_the_ingest_page_cache(sqlite_url: str, tmp_path: Path) -> None:
    """A push is written with a 16 MB page cache; the server's pushes go through whichever pooled
    connection is free, and each kept its 16 MB (the SQLite receiver's server grew past 500 MB).
    After the write, every idle connection is back to SQLite's default."""
    from contextlib import ExitStack

    from trimloop.connectors.sync import SQLITE_DEFAULT_CACHE_KB
    from trimloop.core.db import make_engine, upgrade

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        sync_connector(engine=engine, connector=FilesConnector(name="local", options={
            "path": str(make_store(tmp_path / "store"))}))
        items = [LogItem(external_id=f"t:{i}", called_at=datetime.now(timezone.utc), prompt="triage", version="1",
                         inputs={"ticket": f"t{i}"}, output="bug", model="gpt-4o-mini") for i in range(3)]
        push = prepare_logs(engine=engine, source="otlp", items=items, settings=Settings())
        store_logs(engine=engine, source="otlp", pushed=[push], settings=Settings())
        assert push.report.logs_added == 3
        idle = engine.pool.checkedin()
        assert idle >= 1
        with ExitStack() as stack:  # every idle connection at once
            caches = [stack.enter_context(engine.connect()).exec_driver_sql("PRAGMA cache_size").scalar()
                      for _ in range(idle)]
        assert caches == [-SQLITE_DEFAULT_CACHE_KB] * idle
    finally:
        engine.dispose()
