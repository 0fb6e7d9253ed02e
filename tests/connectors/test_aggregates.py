"""Traffic aggregates and the bounded reservoir: every call counted once, full records bounded per
version per day, aggregates = recount of the records kept + those dropped, retention sweep."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import log_line, make_store, write_logs
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core import reservoir, traffic
from trimloop.core.settings import Settings
from trimloop.core.tables import DatasetItem, LogRecord, TrafficAggregate

pytestmark = pytest.mark.db
DAY0 = datetime(2025, 6, 1, tzinfo=timezone.utc)


def files(root: Path) -> FilesConnector:
    return FilesConnector(name="local", options={"path": str(root)})


def settings(per_day: int, retention_days: int = 90) -> Settings:
    return Settings(reservoir={"per_day": per_day, "sweep_batch": 7}, retention_days=retention_days)


def calls(root: Path, n: int, days: int, *, start: int = 0) -> None:
    lines = []
    for i in range(start, start + n):
        at = DAY0 + timedelta(days=i % days, seconds=i)
        lines.append(log_line(i, called_at=at.isoformat().replace("+00:00", "Z"), latency_s=0.1 + (i % 10) / 10,
                              cost=0.001 * (1 + i % 3), sample_rate=0.5 if i % 4 == 0 else None,
                              feedback=[{"name": "thumbs", "value": i % 2}] if i % 25 == 0 else []))
    write_logs(root / "logs" / "calls.jsonl", lines)


def invariant(engine: Engine) -> list[tuple]:
    """Per group: (records in the aggregate, records stored + dropped); they must be equal."""
    with engine.connect() as conn:
        agg = conn.execute(select(TrafficAggregate.version_id, TrafficAggregate.day, func.sum(TrafficAggregate.records),
                                  func.sum(TrafficAggregate.dropped))
                           .group_by(TrafficAggregate.version_id, TrafficAggregate.day)).all()
        stored = {(v, str(d)): n for v, d, n in conn.execute(text(
            "select version_id, date(called_at), count(*) from logrecord group by version_id, date(called_at)"))}
    return [(n, stored.get((v, str(d)), 0) + dropped) for v, d, n, dropped in agg]


def test_every_call_is_counted_once_and_full_records_stay_bounded(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    calls(root, 600, 3)
    report = sync_connector(engine=engine, connector=files(root), settings=settings(per_day=50), batch_size=100)
    assert report.logs_added == 600 and report.fatal is None
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(LogRecord)).scalar()
        per_day = conn.execute(text("select max(n) from (select count(*) n from logrecord "
                                    "group by version_id, date(called_at)) t")).scalar()
        total = traffic.sums(conn, by=())[()]
        with_feedback = conn.execute(text("select count(*) from logrecord where cast(feedback as text) != '[]'")).scalar()
    assert per_day <= 50 + 50 // 10 + 1 and stored < 600
    assert with_feedback == 24  # records with feedback are kept first: none dropped
    # calls weigh sampled records by 1 / sample_rate; every call counted, kept or dropped
    assert total.records == 600 and total.calls == pytest.approx(450 + 150 * 2)
    assert total.spend == pytest.approx(sum(0.001 * (1 + i % 3) * (2 if i % 4 == 0 else 1) for i in range(600)))
    assert all(n == kept for n, kept in invariant(engine))
    # sending every record again (a full re-sync) adds nothing, dropped ones included
    again = sync_connector(engine=engine, connector=files(root), settings=settings(per_day=50), full=True)
    assert again.logs_added == 0 and again.logs_already_synced == 600
    with engine.connect() as conn:
        assert traffic.sums(conn, by=())[()].records == 600


def test_the_same_records_are_kept_whatever_the_order(engine: Engine, tmp_path: Path, make_db_url) -> None:
    from trimloop.core.db import make_engine, upgrade

    kept = []
    for order in (range(300), reversed(range(300))):
        url = make_db_url()
        upgrade(url)
        other = make_engine(url)
        root = make_store(tmp_path / f"store-{len(kept)}")
        write_logs(root / "logs" / "calls.jsonl", [log_line(i, feedback=[]) for i in order])
        sync_connector(engine=other, connector=files(root), settings=settings(per_day=40), batch_size=50)
        with other.connect() as conn:
            kept.append(sorted(conn.execute(select(LogRecord.external_id)).scalars()))
        other.dispose()
    assert kept[0] == kept[1] and 40 <= len(kept[0]) <= 45


def test_latency_quantiles_come_from_the_merged_sketches(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    calls(root, 200, 2)
    sync_connector(engine=engine, connector=files(root), settings=settings(per_day=20))
    latencies = sorted(0.1 + (i % 10) / 10 for i in range(200))
    with engine.connect() as conn:
        p50, p95 = traffic.latency_quantiles(conn, qs=(0.5, 0.95))
    assert p50 == pytest.approx(latencies[99], rel=0.02) and p95 == pytest.approx(latencies[189], rel=0.02)
    with engine.connect() as conn:
        feedback = [f for (f,) in conn.execute(select(TrafficAggregate.feedback))]
    assert sum(counts.get("0", 0) + counts.get("1", 0) for f in feedback for counts in f.values()) == 8


def test_a_sketch_merged_batch_after_batch_is_one_sketch_of_every_latency(engine: Engine, tmp_path: Path) -> None:
    """Merges take this process's last sketch of a row back instead of parsing its bytes; a row
    another process changed in between has other bytes and is read from the store."""
    root = make_store(tmp_path)
    calls(root, 120, 1)
    sync_connector(engine=engine, connector=files(root), settings=settings(per_day=1000), batch_size=10)
    with engine.begin() as conn:  # another process adds five calls of 50 s to the day's row
        ((row_id, data),) = conn.execute(select(TrafficAggregate.id, TrafficAggregate.latency_sketch)).all()
        other = traffic.load_sketch(data)
        assert other is not None and other.count == 120
        for _ in range(5):
            other.add(50.0)
        conn.execute(TrafficAggregate.__table__.update().where(TrafficAggregate.id == row_id)
                     .values(latency_sketch=traffic._sketch_bytes(other)))
    calls(root, 120, 1, start=120)
    sync_connector(engine=engine, connector=files(root), settings=settings(per_day=1000), batch_size=10)
    with engine.connect() as conn:
        merged = traffic.load_sketch(conn.execute(select(TrafficAggregate.latency_sketch)).scalar_one())
    whole = traffic.load_sketch(data)
    assert whole is not None and merged is not None
    for i in range(120, 240):
        whole.add(0.1 + (i % 10) / 10)
    for _ in range(5):
        whole.add(50.0)
    assert merged.count == 245
    assert [merged.get_quantile_value(q) for q in (0.1, 0.5, 0.9, 0.99)] == pytest.approx(
        [whole.get_quantile_value(q) for q in (0.1, 0.5, 0.9, 0.99)])


def test_the_sketch_cache_hands_a_sketch_out_once_and_forgets_the_oldest() -> None:
    cache = traffic.SketchCache(size=2)
    sketches = [traffic.load_sketch(traffic._sketch_bytes(_sketch(v))) for v in (1.0, 2.0, 3.0)]
    keys = [cache.keep(traffic._sketch_bytes(s), s) for s in sketches if s is not None]
    assert cache.take(keys[0]) is None  # forgotten: the third pushed it out
    assert cache.take(keys[2]) is sketches[2] and cache.take(keys[2]) is None  # once
    assert cache.take(None) is None and cache.take(b"") is None


def _sketch(value: float) -> Any:
    from ddsketch import DDSketch

    sketch = DDSketch()
    sketch.add(value)
    return sketch


def test_retention_sweep_keeps_aggregates_and_dataset_records(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    calls(root, 100, 10)
    sync_connector(engine=engine, connector=files(root), settings=settings(per_day=1000))
    with engine.begin() as conn:
        first = conn.execute(select(LogRecord.id, LogRecord.prompt_id, LogRecord.version_id)
                             .order_by(LogRecord.called_at)).first()
        conn.execute(text("insert into dataset (prompt_id, version_id, name, source, content_hash, seed, config, "
                          "created_at) values (:p, :v, 'd', 'logs', 'h', 0, '{}', :t)"),
                     {"p": first[1], "v": first[2], "t": DAY0})
        dataset_id = conn.execute(text("select id from dataset")).scalar()
        conn.execute(DatasetItem.__table__.insert().values(dataset_id=dataset_id, position=0, split="search",
                                                           inputs={}, feedback=[], log_id=first[0]))
    with engine.connect() as conn:
        before = traffic.sums(conn, by=("day",))
    now = DAY0 + timedelta(days=5 + 3)  # retention 3 days: the first five days' records go
    swept = reservoir.sweep(engine, policy=reservoir.Policy.of(settings(1000, retention_days=3)), now=now)
    assert swept.records_deleted == 49 and swept.transactions > 7  # 7 per transaction
    with engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(LogRecord).where(LogRecord.called_at < DAY0 + timedelta(days=5))).scalar()
        after = traffic.sums(conn, by=("day",))
    assert left == 1  # the dataset's record stays
    assert {k: v.records for k, v in after.items()} == {k: v.records for k, v in before.items()}
    assert all(n == kept for n, kept in invariant(engine))


def test_part_days_and_the_sweep_reach_every_record_through_the_version_index(engine: Engine, tmp_path: Path) -> None:
    """No index holds the records by time alone (migration 0021): a window's part-days and the sweep
    read time ranges after a version id, or after NULL. Records with a version, with a prompt and no
    version, and with neither are all summed and swept, and no read scans the table."""
    from sqlmodel import Session

    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl", [
        log_line(i, called_at=(DAY0 + timedelta(hours=i)).isoformat().replace("+00:00", "Z"), feedback=[])
        for i in range(48)])  # one an hour over two days
    sync_connector(engine=engine, connector=files(root), settings=settings(per_day=1000))
    with engine.connect() as conn:
        prompt_id = conn.execute(select(LogRecord.prompt_id)).scalars().first()
    with Session(engine) as session:
        for i in range(48):
            session.add(LogRecord(connector="other", external_id=f"o-{i}", called_at=DAY0 + timedelta(hours=i),
                                  prompt_id=prompt_id if i % 2 else None, cost=0.5))
        session.commit()
    since, until = DAY0 + timedelta(hours=6), DAY0 + timedelta(hours=30)  # 18 h of day 0, 6 h of day 1
    with engine.connect() as conn:
        window = traffic.sums(conn, by=("version_id",), since=since, until=until)
        only_prompt = traffic.sums(conn, by=(), since=since, until=until, prompt_ids=[prompt_id])[()]
    assert {k: v.records for k, v in window.items()} == {(None,): 24, (1,): 24}
    assert window[(None,)].spend == pytest.approx(12.0) and only_prompt.records == 24 + 12
    plans: list[str] = []  # SQLite's plan of every read of the records

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "logrecord" in statement and not many:
            rows = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            plans.append(" ".join(row[-1] for row in rows))

    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        event.listen(engine, "before_cursor_execute", explain)
    try:
        with engine.connect() as conn:
            traffic.sums(conn, by=("day",), since=since, until=until)
        swept = reservoir.sweep(engine, policy=reservoir.Policy.of(settings(1000, retention_days=1)),
                                now=DAY0 + timedelta(days=2))
    finally:
        if sqlite:
            event.remove(engine, "before_cursor_execute", explain)
    reads = [p for p in plans if "logrecord" in p]
    assert not sqlite or (reads and not [p for p in reads if "SCAN logrecord" in p]), reads
    assert swept.records_deleted == 48  # day 0: 24 with a version, 12 with a prompt only, 12 with neither
    with engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(LogRecord)
                            .where(LogRecord.called_at < DAY0 + timedelta(days=1))).scalar()
    assert left == 0


def test_the_savings_projection_counts_the_calls_the_reservoir_dropped(engine: Engine, tmp_path: Path) -> None:
    from sqlmodel import Session

    from trimloop.optimizer.baseline import log_facts

    root = make_store(tmp_path)
    calls(root, 600, 3)
    sync_connector(engine=engine, connector=files(root), settings=settings(per_day=50))
    with Session(engine) as session:
        prompt_id = session.execute(select(LogRecord.prompt_id)).scalars().first()
        facts = log_facts(session, [], prompt_id=prompt_id)
    assert len(facts.call_times) < 600 and sum(facts.call_weights) == pytest.approx(450 + 150 * 2)


def test_records_a_dataset_pins_stay_and_the_rest_are_the_lowest_keys(engine: Engine, tmp_path: Path) -> None:
    """The trim reads a group once: the record after the last one it deletes sets the threshold. The
    dataset's records (here those with the highest keys) stay whatever their keys; every other record
    kept has a lower key than every record dropped, as if the calls had come in any other order."""
    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl", [log_line(i, feedback=[]) for i in range(20)])
    sync_connector(engine=engine, connector=files(root), settings=settings(per_day=20), batch_size=10)
    with engine.begin() as conn:
        top = conn.execute(select(LogRecord.id, LogRecord.prompt_id, LogRecord.version_id, LogRecord.external_id)
                           .order_by(LogRecord.sample_key.desc()).limit(3)).all()
        conn.execute(text("insert into dataset (prompt_id, version_id, name, source, content_hash, seed, config, "
                          "created_at) values (:p, :v, 'd', 'logs', 'h', 0, '{}', :t)"),
                     {"p": top[0][1], "v": top[0][2], "t": DAY0})
        dataset_id = conn.execute(text("select id from dataset")).scalar()
        conn.execute(DatasetItem.__table__.insert(), [
            {"dataset_id": dataset_id, "position": k, "split": "search", "inputs": {}, "feedback": [], "log_id": row[0]}
            for k, row in enumerate(top)])
    write_logs(root / "logs" / "calls.jsonl", [log_line(i, feedback=[]) for i in range(20, 200)])
    report = sync_connector(engine=engine, connector=files(root), settings=settings(per_day=20), batch_size=10)
    assert report.logs_added == 180
    pinned = {row[3] for row in top}
    key = {f"call-{i}": reservoir.sample_key("local", f"call-{i}", first=False) for i in range(200)}
    with engine.connect() as conn:
        kept = set(conn.execute(select(LogRecord.external_id)).scalars())
    assert pinned <= kept and 20 <= len(kept) <= 20 + 20 // 10 + 1
    free = sorted((k for k in key if k not in pinned), key=key.get)
    assert sorted(kept - pinned, key=key.get) == free[:len(kept - pinned)]
    assert all(n == stored for n, stored in invariant(engine))
    if engine.dialect.name == "sqlite":  # a trim reads a version's day from its index alone, not the records
        query = reservoir.highest_keys(reservoir._in_group(top[0][1], top[0][2], DAY0.date()), 5)
        with engine.connect() as conn:
            sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
            plan = " ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "COVERING INDEX ix_logrecord_version_time" in plan, plan


def days_of_calls(root: Path, counts: list[int], *, first_day: int = 0, feedback_every: int = 0) -> None:
    """counts[k] calls spread over day first_day + k (ids day-d-j); feedback on every feedback_every-th."""
    lines = []
    for d, n in enumerate(counts, start=first_day):
        for j in range(n):
            at = DAY0 + timedelta(days=d, seconds=j * 86400 // n)
            fb = [{"name": "thumbs", "value": 1}] if feedback_every and j % feedback_every == 0 else []
            lines.append(log_line(0, id=f"day-{d}-{j}", called_at=at.isoformat().replace("+00:00", "Z"), feedback=fb))
    write_logs(root / "logs" / "calls.jsonl", lines)


def kept_by_day(engine: Engine) -> dict[str, list[str]]:
    """Each day's stored records, lowest sample key first."""
    with engine.connect() as conn:
        rows = conn.execute(select(LogRecord.external_id).order_by(LogRecord.sample_key, LogRecord.id)).scalars()
        out: dict[str, list[str]] = {}
        for external_id in rows:
            out.setdefault(external_id.split("-")[1], []).append(external_id)
    return out


def lowest_keys(external_ids: list[str], first: set[str]) -> list[str]:
    return sorted(external_ids, key=lambda e: reservoir.sample_key("local", e, first=e in first))


def spy_admit(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every record `admit` lets through to be written."""
    written: list[dict] = []
    admit = reservoir.admit

    def spy(conn, rows, policy):  # type: ignore[no-untyped-def]
        stored, dropped = admit(conn, rows, policy)
        written.extend(stored)
        return stored, dropped

    monkeypatch.setattr(reservoir, "admit", spy)
    return written


def test_a_day_its_version_s_earlier_days_predict_drops_records_unwritten_keeping_the_same_lowest_keys(
        engine: Engine, tmp_path: Path, make_db_url, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three days of 300 calls, 40 kept a day. Day 2's history is day 1 (a complete day: day 0 has
    calls too), so its records above 1 + 40 × 1.5 / 300 = 1.2 are dropped without being written;
    each day still keeps its lowest keys, the same ones as with the estimate off (headroom 0)."""
    from trimloop.core.db import make_engine, upgrade

    written: dict[float, list[dict]] = {}
    kept: dict[float, dict[str, list[str]]] = {}
    for headroom in (1.5, 0):
        url = make_db_url()
        upgrade(url)
        other = make_engine(url)
        root = make_store(tmp_path / f"store-{headroom}")
        added = 0
        with monkeypatch.context() as patch:
            written[headroom] = spy_admit(patch)
            for first_day, counts in ((0, [300, 300]), (2, [300])):  # two syncs: days 0-1, then day 2
                days_of_calls(root, counts, first_day=first_day, feedback_every=100)
                added += sync_connector(engine=other, connector=files(root), batch_size=50,
                                        settings=Settings(reservoir={"per_day": 40, "headroom": headroom})).logs_added
        assert added == 900
        kept[headroom] = kept_by_day(other)
        assert all(n == stored for n, stored in invariant(other))
        other.dispose()
    first = {f"day-{d}-{j}" for d in range(3) for j in (0, 100, 200)}
    for day in ("0", "1", "2"):
        every = lowest_keys([f"day-{day}-{j}" for j in range(300)], first)
        for headroom in (1.5, 0):
            assert 40 <= len(kept[headroom][day]) <= 40 + 40 // 10 + 1
            assert kept[headroom][day] == every[:len(kept[headroom][day])]  # the day's lowest keys
    day_2 = [r for r in written[1.5] if r["external_id"].startswith("day-2-")]
    assert all(r["sample_key"] <= 1 + 40 * 1.5 / 300 for r in day_2)
    assert len(day_2) < 40 * 1.5 + 15  # ~ the 60 below the threshold
    exact_day_2 = [r for r in written[0] if r["external_id"].startswith("day-2-")]
    assert len(exact_day_2) > 100  # without the estimate: 40 + about 40 × ln(300 / 40) written
    assert {r["external_id"] for r in day_2 if r["external_id"] in first} == {"day-2-0", "day-2-100", "day-2-200"}


def test_a_day_with_far_fewer_calls_than_its_history_keeps_every_record_below_the_estimate(
        engine: Engine, tmp_path: Path) -> None:
    """Day 2 brings 50 calls after two days of 300: the estimate (300) says keep keys below 1.2, so
    the day keeps the ~10 records below it, not 40 — still its lowest keys, every call counted."""
    root = make_store(tmp_path)
    added = 0
    for first_day, counts in ((0, [300, 300]), (2, [50])):
        days_of_calls(root, counts, first_day=first_day)
        added += sync_connector(engine=engine, connector=files(root), batch_size=50,
                                settings=Settings(reservoir={"per_day": 40, "headroom": 1.5})).logs_added
    assert added == 650
    day_2 = kept_by_day(engine)["2"]
    below = [e for e in lowest_keys([f"day-2-{j}" for j in range(50)], set())
             if reservoir.sample_key("local", e, first=False) <= 1.2]
    assert day_2 == below and 0 < len(day_2) < 40
    with engine.connect() as conn:
        assert traffic.sums(conn, by=("day",))[(date(2025, 6, 3),)].records == 50
    assert all(n == stored for n, stored in invariant(engine))
