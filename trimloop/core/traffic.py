"""Traffic aggregates: every ingested call summed per prompt version × model × day.

Sync (and anything that adds LogRecords through a Session) adds each new record to its group's
`TrafficAggregate` in the same transaction as the record: calls (1 / sample_rate each), token
classes, spend, errors, feedback counts, and a DDSketch of latencies. The full records are a
bounded sample (core.reservoir); reports, dashboards, due logic and savings read the aggregates.

A window that starts or ends inside a day reads that day's part from the records still stored,
scaled up by the day's calls / the calls of its stored records (exactly 1 when none were dropped),
so results on a store that dropped nothing are what a scan of every record gave.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from ddsketch import DDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as SketchMessage
from ddsketch.pb.proto import DDSketchProto
from sqlalchemy import bindparam, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from trimloop.core.tables import (
    MAX_COST_PER_CALL,
    MAX_LATENCY_S,
    LogRecord,
    LogSeen,
    PromptVersion,
    TrafficAggregate,
    record_key,
    utcnow,
)

SKETCH_ACCURACY = 0.01  # DDSketch relative accuracy of latency quantiles (1 %)
ERROR_MARKERS = ("ERROR", "STATUS_CODE_ERROR", "FAILED")
EPOCH = date(1970, 1, 1)
KEYS = ("day", "prompt_id", "version_id", "model")
AGG = TrafficAggregate.__table__  # type: ignore[attr-defined]
LOG = LogRecord.__table__  # type: ignore[attr-defined]


def is_error(output: str | None, meta: Mapping[str, Any] | None) -> bool:
    """A call that failed at the provider: no output, or an error in what the connector kept."""
    if output is None:
        return True
    if not meta:  # most records: nothing kept beside the output
        return False
    if meta.get("error"):
        return True
    return any(str(meta.get(k) or "").upper() in ERROR_MARKERS for k in ("status", "status_code", "trace_state"))


def weight_of(rate: float | None) -> float:
    """The calls one record stands for: 1 / sample_rate (1 when unsampled or out of (0, 1])."""
    return 1.0 / rate if rate is not None and 0 < rate <= 1 else 1.0


def day_number(at: datetime) -> int:
    return (utc_day(at) - EPOCH).days


def utc_day(at: datetime) -> date:
    if at.tzinfo is timezone.utc:  # most times are UTC already: skip the conversion
        return at.date()
    return (at.astimezone(timezone.utc) if at.tzinfo else at).date()


def aware(at: datetime) -> datetime:
    return at.astimezone(timezone.utc) if at.tzinfo else at.replace(tzinfo=timezone.utc)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


# -- adding records ------------------------------------------------------------------------------
def _sketch_bytes(sketch: DDSketch) -> bytes:
    return DDSketchProto.to_proto(sketch).SerializeToString()


def load_sketch(data: bytes | None) -> DDSketch | None:
    if not data:
        return None
    message = SketchMessage()
    message.ParseFromString(data)
    return DDSketchProto.from_proto(message)  # type: ignore[return-value]


class SketchCache:
    """The sketches this process wrote last, by their stored bytes: an ingest that updates the same
    aggregate rows batch after batch takes the parsed sketch back instead of parsing its bytes
    again (ddsketch's from_proto adds bin by bin: most of a merge's time). A row another process
    changed meanwhile has other bytes and is parsed; a sketch is taken out before it is merged, so
    a rolled-back merge leaves no wrong entry behind, only one that nothing matches."""

    def __init__(self, size: int = 256):
        self.size = size
        self._kept: dict[bytes, DDSketch] = {}
        self._lock = threading.Lock()

    def take(self, data: bytes | None) -> DDSketch | None:
        if not data:
            return None
        with self._lock:
            return self._kept.pop(bytes(data), None)

    def keep(self, data: bytes, sketch: DDSketch) -> bytes:
        with self._lock:
            self._kept[data] = sketch
            while len(self._kept) > self.size:  # the oldest first
                del self._kept[next(iter(self._kept))]
        return data


_SKETCHES = SketchCache()


@dataclass
class Group:
    """One aggregate row's increments, built in Python from a batch of records."""

    records: int = 0
    calls: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cached_input_tokens: float = 0.0
    cache_write_tokens: float = 0.0
    reasoning_tokens: float = 0.0
    spend: float = 0.0
    costed_calls: float = 0.0
    cost_n: int = 0
    cost_sum: float = 0.0
    cost_sq: float = 0.0
    errors: float = 0.0
    feedback: dict[str, dict[str, int]] = field(default_factory=dict)
    sketch: DDSketch | None = None
    latency_min: float | None = None
    latency_max: float | None = None
    dropped: int = 0
    dropped_calls: float = 0.0

    def add(self, r: Mapping[str, Any]) -> None:
        w = weight_of(r.get("sample_rate"))
        self.records += 1
        self.calls += w
        get = r.get
        if tokens := get("input_tokens"):  # written out: this runs for every ingested record
            self.input_tokens += tokens * w
        if tokens := get("output_tokens"):
            self.output_tokens += tokens * w
        if tokens := get("cached_input_tokens"):
            self.cached_input_tokens += tokens * w
        if tokens := get("cache_write_tokens"):
            self.cache_write_tokens += tokens * w
        if tokens := get("reasoning_tokens"):
            self.reasoning_tokens += tokens * w
        cost = r.get("cost")
        if isinstance(cost, int | float) and 0 <= cost <= MAX_COST_PER_CALL:
            self.spend += cost * w
            self.costed_calls += w
            self.cost_n += 1
            self.cost_sum += cost
            self.cost_sq += cost * cost
        if is_error(r.get("output"), r.get("meta")):
            self.errors += w
        for fb in r.get("feedback") or []:
            if isinstance(fb, dict) and fb.get("name") is not None:
                values = self.feedback.setdefault(str(fb["name"]), {})
                value = _value_text(fb.get("value"))
                values[value] = values.get(value, 0) + 1
        latency = r.get("latency_s")
        if isinstance(latency, int | float) and 0 <= latency <= MAX_LATENCY_S:
            if self.sketch is None:
                self.sketch = DDSketch(SKETCH_ACCURACY)
            self.sketch.add(float(latency))
            self.latency_min = latency if self.latency_min is None else min(self.latency_min, latency)
            self.latency_max = latency if self.latency_max is None else max(self.latency_max, latency)

    def drop(self, r: Mapping[str, Any]) -> None:
        self.dropped += 1
        self.dropped_calls += weight_of(r.get("sample_rate"))


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def group_key(r: Mapping[str, Any]) -> tuple[date, int, int, str]:
    return (utc_day(r["called_at"]), r.get("prompt_id") or 0, r.get("version_id") or 0, r.get("model") or "")


class Tally:
    """Increments for many aggregate rows; `write` adds them to the store."""

    def __init__(self) -> None:
        self.groups: dict[tuple[date, int, int, str], Group] = {}

    def group(self, key: tuple[date, int, int, str]) -> Group:
        found = self.groups.get(key)
        if found is None:
            found = self.groups[key] = Group()
        return found

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for r in rows:
            self.group(group_key(r)).add(r)

    def drop(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Records deleted from (or never stored in) the full-record table, already added."""
        for r in rows:
            self.group(group_key(r)).drop(r)

    def write(self, conn: Connection) -> None:
        """Add every group's increments to its row: new rows inserted, existing ones read (under
        the transaction's lock), merged and updated."""
        if not self.groups:
            return
        keys = sorted(self.groups)
        existing: dict[tuple[date, int, int, str], Any] = {}
        for start in range(0, len(keys), 200):
            chunk = keys[start:start + 200]
            days = sorted({k[0] for k in chunk})
            versions = sorted({k[2] for k in chunk})
            query = select(AGG).where(AGG.c.day.in_(days), AGG.c.version_id.in_(versions))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            for row in conn.execute(query).mappings():
                key = (as_date(row["day"]), row["prompt_id"], row["version_id"], row["model"])
                if key in self.groups:
                    existing[key] = row
        now = utcnow()
        inserts = []
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # the columns set → one executemany each
        for key in keys:
            g = self.groups[key]
            row = existing.get(key)
            if row is None:
                inserts.append(_new_row(key, g, now))
            else:
                values = _merged(row, g, now)
                updates.setdefault(tuple(values), []).append({"row_id": row["id"], **{f"new_{k}": v for k, v in values.items()}})
        for columns, params in updates.items():
            conn.execute(AGG.update().where(AGG.c.id == bindparam("row_id"))
                         .values({c: bindparam(f"new_{c}") for c in columns}), params)
        if inserts:
            _insert_rows(conn, inserts)


def _insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert new aggregate rows in one statement; a row a concurrent writer inserted first is merged
    into the winner's row instead."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(AGG).on_conflict_do_nothing(index_elements=list(KEYS)).returning(*(AGG.c[k] for k in KEYS))
    done = {(as_date(d), p, v, m) for d, p, v, m in conn.execute(statement, rows).all()}
    for row in rows:
        if (row["day"], row["prompt_id"], row["version_id"], row["model"]) in done:
            continue
        stored = conn.execute(select(AGG).where(*(AGG.c[k] == row[k] for k in KEYS))).mappings().one()
        conn.execute(AGG.update().where(AGG.c.id == stored["id"]).values(
            **_merged(stored, _group_of(row), row["updated_at"])))


def _group_of(row: Mapping[str, Any]) -> Group:
    g = Group(**{k: row[k] for k in _SUMS}, feedback=row["feedback"], sketch=load_sketch(row["latency_sketch"]),
              latency_min=row["latency_min"], latency_max=row["latency_max"])
    return g


_SUMS = ("records", "calls", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
         "reasoning_tokens", "spend", "costed_calls", "cost_n", "cost_sum", "cost_sq", "errors", "dropped",
         "dropped_calls")


def as_date(value: Any) -> date:
    """A DATE column's value as a date (SQLite returns 'YYYY-MM-DD' from some raw statements)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _new_row(key: tuple[date, int, int, str], g: Group, now: datetime) -> dict[str, Any]:
    day, prompt_id, version_id, model = key
    return {"day": day, "prompt_id": prompt_id, "version_id": version_id, "model": model,
            **{k: getattr(g, k) for k in _SUMS}, "feedback": g.feedback,
            "latency_sketch": _sketch_bytes(g.sketch) if g.sketch is not None else None,
            "latency_min": g.latency_min, "latency_max": g.latency_max, "updated_at": now}


def _merged(row: Mapping[str, Any], g: Group, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {k: (row[k] or 0) + getattr(g, k) for k in _SUMS}
    if g.feedback:
        feedback = {name: dict(counts) for name, counts in (row["feedback"] or {}).items()}
        for name, counts in g.feedback.items():
            kept = feedback.setdefault(name, {})
            for value, n in counts.items():
                kept[value] = kept.get(value, 0) + n
        values["feedback"] = feedback
    if g.sketch is not None:
        stored = row["latency_sketch"]
        sketch = _SKETCHES.take(stored) or load_sketch(stored)
        if sketch is None:
            sketch = g.sketch
        else:
            sketch.merge(g.sketch)
        values["latency_sketch"] = _SKETCHES.keep(_sketch_bytes(sketch), sketch)
        values["latency_min"] = min(x for x in (row["latency_min"], g.latency_min) if x is not None)
        values["latency_max"] = max(x for x in (row["latency_max"], g.latency_max) if x is not None)
    values["updated_at"] = now
    return values


def claim(conn: Connection, keys: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Remember records' identities (day number, key); the ones no earlier ingest had (a concurrent
    ingest of the same record waits for the other transaction, then finds it)."""
    pairs = list(dict.fromkeys(keys))
    if not pairs:
        return set()
    found: set[tuple[int, int]] = set()
    if conn.dialect.name == "postgresql":  # one statement per 50,000: the pairs as two arrays
        for start in range(0, len(pairs), 50_000):
            chunk = pairs[start:start + 50_000]
            rows = conn.exec_driver_sql(_CLAIM_PG, ([d for d, _ in chunk], [k for _, k in chunk])).all()
            found.update(map(tuple, rows))  # plain tuples: a Row compares with a tuple slowly
        return found
    for start in range(0, len(pairs), _CLAIM_SQLITE_ROWS):  # multi-row VALUES, written here (SQLAlchemy's is slower)
        chunk = pairs[start:start + _CLAIM_SQLITE_ROWS]
        statement = _CLAIM_SQLITE.format(values=",".join(("(?,?)",) * len(chunk)))
        found.update(map(tuple, conn.exec_driver_sql(statement, tuple(x for pair in chunk for x in pair)).all()))
    return found


_CLAIM_PG = ("INSERT INTO logseen (day, key) SELECT * FROM unnest(%s::integer[], %s::bigint[]) "
             "ON CONFLICT DO NOTHING RETURNING day, key")
_CLAIM_SQLITE = "INSERT INTO logseen (day, key) VALUES {values} ON CONFLICT DO NOTHING RETURNING day, key"
_CLAIM_SQLITE_ROWS = 5000  # 10,000 variables: under SQLite's limit of 32,766


def mark_seen(conn: Connection, keys: Iterable[tuple[int, int]]) -> None:
    """Remember records' identities (day number, key); ones already known are left as they are."""
    rows = [{"day": d, "key": k} for d, k in set(keys)]
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    table = LogSeen.__table__  # type: ignore[attr-defined]
    for start in range(0, len(rows), 5000):
        conn.execute(insert(table).on_conflict_do_nothing(), rows[start:start + 5000])


def already_seen(conn: Connection, keys: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """The (day number, key) pairs among `keys` that an earlier ingest stored."""
    table = LogSeen.__table__  # type: ignore[attr-defined]
    by_day: dict[int, list[int]] = {}
    for d, k in set(keys):
        by_day.setdefault(d, []).append(k)
    found: set[tuple[int, int]] = set()
    for d, ks in by_day.items():
        for start in range(0, len(ks), 900):
            found.update((d, k) for k in conn.execute(select(table.c.key).where(
                table.c.day == d, table.c.key.in_(ks[start:start + 900]))).scalars())
    return found


# -- records added through a Session (seeds, tests, the demo) -------------------------------------
_COLUMNS = ("prompt_id", "version_id", "model", "called_at", "sample_rate", "input_tokens", "output_tokens",
            "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost", "latency_s", "output", "meta",
            "feedback")


def log_row(log: LogRecord) -> dict[str, Any]:
    return {name: getattr(log, name) for name in _COLUMNS}


@event.listens_for(Session, "after_flush")
def _aggregate_new_logs(session: Session, _context: Any) -> None:
    """LogRecords added through a Session count in the aggregates like synced ones (and are
    remembered as seen), in the same flush."""
    from trimloop.core import reservoir  # reservoir imports this module

    logs = [obj for obj in session.new if isinstance(obj, LogRecord)]
    if not logs:
        return
    conn = session.connection()
    rows = [log_row(log) for log in logs]
    tally = Tally()
    tally.add(rows)
    tally.write(conn)
    mark_seen(conn, ((day_number(log.called_at), record_key(log.connector, log.external_id)) for log in logs))
    reservoir.count_kept(conn, rows)


# -- reading -------------------------------------------------------------------------------------
@dataclass
class Sums:
    """Sums over a group of calls: what reports need."""

    records: int = 0
    calls: float = 0.0
    spend: float = 0.0
    costed_calls: float = 0.0
    cost_n: int = 0
    cost_sum: float = 0.0
    cost_sq: float = 0.0

    def add(self, other: "Sums", scale: float = 1.0) -> None:
        self.records += other.records
        self.calls += other.calls * scale
        self.spend += other.spend * scale
        self.costed_calls += other.costed_calls * scale
        self.cost_n += other.cost_n
        self.cost_sum += other.cost_sum
        self.cost_sq += other.cost_sq

    @property
    def cost_per_call(self) -> float | None:
        return self.spend / self.costed_calls if self.costed_calls else None


def _whole_days(since: datetime | None, until: datetime | None) -> tuple[date | None, date | None]:
    """The first and last day wholly inside [since, until) (None: unbounded)."""
    first = None
    if since is not None:
        d = utc_day(since)
        first = d if day_start(d) == aware(since) else d + timedelta(days=1)
    last = None if until is None else utc_day(until) - timedelta(days=1)
    return first, last


def _filters(table: Any, prompt_ids: Iterable[int] | None, version_ids: Iterable[int] | None) -> list[Any]:
    out = []
    if prompt_ids is not None:
        out.append(table.c.prompt_id.in_(sorted(set(prompt_ids))))
    if version_ids is not None:
        out.append(table.c.version_id.in_(sorted(set(version_ids))))
    return out


def sums(conn: Any, *, by: tuple[str, ...], since: datetime | None = None, until: datetime | None = None,
         prompt_ids: Iterable[int] | None = None, version_ids: Iterable[int] | None = None
         ) -> dict[tuple[Any, ...], Sums]:
    """Sums of the calls in [since, until) (either may be None: unbounded), grouped by `by` ⊆
    day, prompt_id, version_id, model. Keys hold None where the records named none."""
    prompt_ids = list(prompt_ids) if prompt_ids is not None else None
    version_ids = list(version_ids) if version_ids is not None else None
    since = aware(since) if since is not None else None
    until = aware(until) if until is not None else None
    out: dict[tuple[Any, ...], Sums] = {}
    first, last = _whole_days(since, until)
    if first is None or last is None or first <= last:
        cols = [AGG.c[k] for k in by]
        where = _filters(AGG, prompt_ids, version_ids)
        if first is not None:
            where.append(AGG.c.day >= first)
        if last is not None:
            where.append(AGG.c.day <= last)
        query = select(*cols, func.sum(AGG.c.records), func.sum(AGG.c.calls), func.sum(AGG.c.spend),
                       func.sum(AGG.c.costed_calls), func.sum(AGG.c.cost_n), func.sum(AGG.c.cost_sum),
                       func.sum(AGG.c.cost_sq)).where(*where).group_by(*cols)
        n = len(by)
        keys = [_KEY_VALUES.get(k, _same) for k in by]
        for row in conn.execute(query).all():  # one pass, one Sums per row (reports read thousands)
            key = tuple(f(v) for f, v in zip(keys, row, strict=False))
            part = Sums(int(row[n] or 0), float(row[n + 1] or 0), float(row[n + 2] or 0), float(row[n + 3] or 0),
                        int(row[n + 4] or 0), float(row[n + 5] or 0), float(row[n + 6] or 0))
            found = out.get(key)
            if found is None:
                out[key] = part
            else:  # prompt or version 0 and NULL are both "none"
                found.add(part)
    for start, end in _partial_days(since, until, first, last):
        for key, part in _stored(conn, by, start, end, prompt_ids, version_ids).items():
            out.setdefault(key, Sums()).add(part)
    return out


def _or_none(value: Any) -> Any:
    return value or None


def _same(value: Any) -> Any:
    return value


_KEY_VALUES = {"day": as_date, "prompt_id": _or_none, "version_id": _or_none, "model": _or_none}


def _partial_days(since: datetime | None, until: datetime | None, first: date | None,
                  last: date | None) -> list[tuple[datetime, datetime]]:
    """The parts of [since, until) outside its whole days."""
    parts = []
    if since is not None and until is not None and first is not None and last is not None and first > last:
        return [(since, until)] if since < until else []  # within one day or two neighbouring ones
    if since is not None and first is not None and day_start(first) > since:
        parts.append((since, day_start(first)))
    if until is not None and last is not None and day_start(last + timedelta(days=1)) < until:
        parts.append((day_start(last + timedelta(days=1)), until))
    return parts


def versions_of(conn: Any, prompt_ids: list[int] | None = None) -> list[int]:
    """The ids of every version (of `prompt_ids`, if given). No index holds the records by time alone
    (migration 0021): a time range is read from ix_logrecord_version_time after a version id, or
    after NULL for the records that named no version."""
    query = select(PromptVersion.__table__.c.id)  # type: ignore[attr-defined]
    if prompt_ids is not None:
        query = query.where(PromptVersion.__table__.c.prompt_id.in_(prompt_ids))  # type: ignore[attr-defined]
    return list(conn.execute(query.order_by("id")).scalars())


def _indexed(conn: Any, prompt_ids: list[int] | None, version_ids: list[int] | None) -> list[list[Any]]:
    """`_filters` as conditions that each lead ix_logrecord_version_time to a time range."""
    if version_ids is not None:
        return [_filters(LOG, prompt_ids, version_ids)]
    versions = versions_of(conn, prompt_ids)
    unversioned = [LOG.c.version_id.is_(None), *_filters(LOG, prompt_ids, None)]
    return [[LOG.c.version_id.in_(versions)], unversioned] if versions else [unversioned]


def _stored(conn: Any, by: tuple[str, ...], start: datetime, end: datetime, prompt_ids: list[int] | None,
            version_ids: list[int] | None) -> dict[tuple[Any, ...], Sums]:
    """Sums over the stored records in [start, end) (a part of at most two days), each scaled by
    its version-day's calls / stored calls (1 unless records were dropped)."""
    day = func.date(LOG.c.called_at)
    cols = [day if k == "day" else LOG.c[k] for k in by]
    extra = [LOG.c.version_id, LOG.c.prompt_id, day]
    rows = []
    for group in _indexed(conn, prompt_ids, version_ids):  # groups differ in version_id: no row is in two
        query = (select(*cols, *extra, func.count(), func.sum(LogRecord.weight()),
                        func.sum(LogRecord.weighted_cost()), func.sum(LogRecord.costed_weight()),
                        func.count(LogRecord.counted_cost()), func.sum(LogRecord.counted_cost()),
                        func.sum(LogRecord.counted_cost() * LogRecord.counted_cost()))
                 .where(*group, LOG.c.called_at >= start, LOG.c.called_at < end)
                 .group_by(*cols, *extra))
        rows.extend(conn.execute(query).all())
    scales = _scales(conn, {(r[len(by)] or 0, r[len(by) + 1] or 0, as_date(r[len(by) + 2])) for r in rows})
    out: dict[tuple[Any, ...], Sums] = {}
    for r in rows:
        key = tuple(_KEY_VALUES.get(k, _same)(v) for k, v in zip(by, r[:len(by)], strict=True))
        scale = scales.get((r[len(by)] or 0, r[len(by) + 1] or 0, as_date(r[len(by) + 2])), 1.0)
        n, calls, spend, costed, k, total, squares = r[len(by) + 3:]
        out.setdefault(key, Sums()).add(Sums(int(n), float(calls or 0), float(spend or 0), float(costed or 0),
                                             int(k or 0), float(total or 0), float(squares or 0)), scale)
    return out


def _scales(conn: Any, groups: set[tuple[int, int, date]]) -> dict[tuple[int, int, date], float]:
    """calls / stored calls of each (version, prompt, day) that lost records (others are left out: 1)."""
    if not groups:
        return {}
    query = (select(AGG.c.version_id, AGG.c.prompt_id, AGG.c.day, func.sum(AGG.c.calls), func.sum(AGG.c.dropped_calls))
             .where(AGG.c.day.in_(sorted({g[2] for g in groups})), AGG.c.version_id.in_(sorted({g[0] for g in groups})),
                    AGG.c.dropped > 0)
             .group_by(AGG.c.version_id, AGG.c.prompt_id, AGG.c.day))
    out = {}
    for version_id, prompt_id, day, calls, dropped in conn.execute(query).all():
        kept = (calls or 0) - (dropped or 0)
        if kept > 0:
            out[(version_id, prompt_id, as_date(day))] = calls / kept
    return out


def latency_quantiles(conn: Any, *, qs: tuple[float, ...], since: datetime | None = None,
                      prompt_ids: Iterable[int] | None = None, version_ids: Iterable[int] | None = None
                      ) -> list[float | None]:
    """Latency quantiles of the calls on the days from `since`'s day on, from the merged daily sketches
    (1 % relative accuracy, clamped to the smallest and largest latency seen)."""
    where = _filters(AGG, prompt_ids, version_ids)
    if since is not None:
        where.append(AGG.c.day >= utc_day(since))
    merged: DDSketch | None = None
    low, high = math.inf, -math.inf
    for data, lo, hi in conn.execute(select(AGG.c.latency_sketch, AGG.c.latency_min, AGG.c.latency_max).where(
            *where, AGG.c.latency_sketch.is_not(None))).all():
        sketch = load_sketch(data)
        if sketch is None:
            continue
        if merged is None:
            merged = sketch
        else:
            merged.merge(sketch)
        low, high = min(low, lo), max(high, hi)
    if merged is None or merged.count == 0:
        return [None for _ in qs]
    return [min(max(merged.get_quantile_value(q), low), high) for q in qs]  # type: ignore[type-var]


def rebuild(conn: Connection) -> int:
    """Aggregate every stored record from scratch (migration 0010's backfill; a store that dropped
    records would lose their counts, so nothing else calls it). The number of records read."""
    conn.execute(AGG.delete())
    count = 0
    last_id = 0
    columns = [LOG.c.id, LOG.c.connector, LOG.c.external_id, *(LOG.c[c] for c in _COLUMNS)]
    while True:
        rows = conn.execute(select(*columns).where(LOG.c.id > last_id).order_by(LOG.c.id).limit(5000)).mappings().all()
        if not rows:
            break
        tally = Tally()
        tally.add(rows)
        tally.write(conn)
        mark_seen(conn, ((day_number(r["called_at"]), record_key(r["connector"], r["external_id"])) for r in rows))
        last_id = rows[-1]["id"]
        count += len(rows)
    return count



def window_sums(conn: Any, windows: list[tuple[int, datetime | None, datetime | None]]) -> list[Sums]:
    """Sums of one version's calls in [since, until) for each (version id, since, until), in three
    queries for all of them: the versions' daily aggregates, the stored records of the days the
    windows cut, and those days' scales."""
    windows = [(v, aware(s) if s else None, aware(u) if u else None) for v, s, u in windows]
    versions = sorted({v for v, _, _ in windows})
    daily: dict[int, dict[date, Sums]] = {v: {} for v in versions}
    dropped_calls: dict[tuple[int, date], float] = {}
    for start in range(0, len(versions), 500):
        for v, d, n, calls, spend, costed, k, total, squares, dropped in conn.execute(
                select(AGG.c.version_id, AGG.c.day, func.sum(AGG.c.records), func.sum(AGG.c.calls),
                       func.sum(AGG.c.spend), func.sum(AGG.c.costed_calls), func.sum(AGG.c.cost_n),
                       func.sum(AGG.c.cost_sum), func.sum(AGG.c.cost_sq), func.sum(AGG.c.dropped_calls))
                .where(AGG.c.version_id.in_(versions[start:start + 500]))
                .group_by(AGG.c.version_id, AGG.c.day)).all():
            dropped_calls[(v, as_date(d))] = float(dropped or 0)
            daily[v][as_date(d)] = Sums(int(n or 0), float(calls or 0), float(spend or 0), float(costed or 0),
                                         int(k or 0), float(total or 0), float(squares or 0))
    cuts = {(v, utc_day(s)) for v, since, until in windows
            for s, _ in _partial_days(since, until, *_whole_days(since, until))}
    cuts |= {(v, utc_day(e - timedelta(microseconds=1))) for v, since, until in windows
             for _, e in _partial_days(since, until, *_whole_days(since, until))}
    records: dict[tuple[int, date], list[tuple[datetime, Sums]]] = {}
    pairs = sorted(cuts)
    for start in range(0, len(pairs), 100):
        clauses = [(LOG.c.version_id == v) & (LOG.c.called_at >= day_start(d))
                   & (LOG.c.called_at < day_start(d + timedelta(days=1))) for v, d in pairs[start:start + 100]]
        cost = LogRecord.counted_cost()
        for v, at, w, spend, costed, c in conn.execute(select(
                LOG.c.version_id, LOG.c.called_at, LogRecord.weight(), LogRecord.weighted_cost(),
                LogRecord.costed_weight(), cost).where(_any(clauses))).all():
            at = aware(at)
            part = Sums(1, float(w), float(spend or 0), float(costed or 0), 0 if c is None else 1, float(c or 0),
                        float(c or 0) ** 2)
            records.setdefault((v, at.date()), []).append((at, part))
    scale = {}
    for v, d in pairs:
        whole = daily.get(v, {}).get(d)
        dropped = dropped_calls.get((v, d), 0.0)
        scale[(v, d)] = whole.calls / (whole.calls - dropped) if dropped and whole.calls > dropped else 1.0
    out = []
    for v, since, until in windows:
        total = Sums()
        first, last = _whole_days(since, until)
        for d, s in daily.get(v, {}).items():
            if (first is None or d >= first) and (last is None or d <= last):
                total.add(s)
        for a, b in _partial_days(since, until, first, last):
            for d in {utc_day(a), utc_day(b - timedelta(microseconds=1))}:
                for at, part in records.get((v, d), []):
                    if a <= at < b:
                        total.add(part, scale.get((v, d), 1.0))
        out.append(total)
    return out


def _any(clauses: list[Any]) -> Any:
    from sqlalchemy import or_

    return or_(*clauses)


def records_ingested(conn: Any, *, prompt_id: int) -> int:
    """Every record ingested for the prompt, stored or dropped."""
    return int(conn.execute(select(func.coalesce(func.sum(AGG.c.records), 0)).where(
        AGG.c.prompt_id == prompt_id)).scalar() or 0)


def day_scales(conn: Any, *, prompt_id: int) -> dict[tuple[int | None, date], float]:
    """The calls each stored record of the prompt stands for beyond its own weight, per (version id,
    day): the day's calls ÷ its stored records' calls, for the days that lost records (others: 1)."""
    query = (select(AGG.c.version_id, AGG.c.day, func.sum(AGG.c.calls), func.sum(AGG.c.dropped_calls))
             .where(AGG.c.prompt_id == prompt_id, AGG.c.dropped > 0).group_by(AGG.c.version_id, AGG.c.day))
    out: dict[tuple[int | None, date], float] = {}
    for version_id, day, calls, dropped in conn.execute(query).all():
        if calls and calls > (dropped or 0):
            out[(version_id or None, as_date(day))] = calls / (calls - (dropped or 0))
    return out
