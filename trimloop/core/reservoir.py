"""Bounded samples of full records, and their retention.

Each prompt version keeps at most `reservoir.per_day` full records per day (default 2,000): the
ones with the lowest sample keys, a seeded hash of the record's identity, so which records stay
does not depend on the order they arrive in and two syncs of the same data keep the same ones.
Records with feedback or a gold answer get keys below every other record's, so they are kept
first. A record a frozen dataset (or a watch's shadow score) points at is never dropped. Records
older than `retention_days` are deleted by `sweep`, a few hundred per transaction. Every record
dropped is first counted in its traffic aggregate (`dropped`), so
aggregate.records = the records still stored + aggregate.dropped.

Keeping the lowest keys of a day whose length is unknown costs writes: once the reservoir is full, a
record below its current threshold is written and a higher one deleted, about per_day × ln(calls ÷
per_day) times a day (2,400 at 6,667 calls). Where a version's earlier days tell how many calls a
day brings (the fewest of its last 7 complete days, from the traffic aggregates), a record whose key
is above the share of such a day that per_day × `headroom` is, is dropped at once, never written.
The day still keeps its lowest keys, and exactly the same records as without the estimate unless
it brings fewer calls than that fewest ÷ headroom; then it keeps every record below the estimate's
threshold, fewer than per_day (a day with half the calls at headroom 1.5 keeps 1,500 of 2,000).
"""

from __future__ import annotations

import hashlib
import time as clock
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from trimloop.core.settings import Settings
from trimloop.core.tables import DatasetItem, LogRecord, LogSeen, ReservoirDay, ShadowScore, TrafficAggregate, utcnow
from trimloop.core.traffic import EPOCH, Tally, as_date, day_start, utc_day, versions_of

LOG = LogRecord.__table__  # type: ignore[attr-defined]
STATE = ReservoirDay.__table__  # type: ignore[attr-defined]
SEEN = LogSeen.__table__  # type: ignore[attr-defined]
AGGREGATE = TrafficAggregate.__table__  # type: ignore[attr-defined]
HISTORY_DAYS = 7  # the days before a reservoir's day whose calls estimate how many it will have
GOLD_KEYS = ("expected", "gold")  # metadata fields that carry a gold answer
DROP_COLUMNS = (LOG.c.id, LOG.c.prompt_id, LOG.c.version_id, LOG.c.model, LOG.c.called_at, LOG.c.sample_rate)


@dataclass(frozen=True)
class Policy:
    per_day: int = 2000
    seed: int = 0
    retention_days: int = 90
    sweep_batch: int = 500
    headroom: float = 1.5  # 0: no early drops (see the module's docstring)

    @classmethod
    def of(cls, settings: Settings | None) -> "Policy":
        if settings is None:
            return cls()
        return cls(per_day=settings.reservoir.per_day, seed=settings.reservoir.seed,
                   retention_days=settings.retention_days, sweep_batch=settings.reservoir.sweep_batch,
                   headroom=settings.reservoir.headroom)

    @property
    def slack(self) -> int:
        """How far over `per_day` a reservoir may grow before it is trimmed back (fewer, larger trims)."""
        return self.per_day // 10 + 1


def sample_key(connector: str, external_id: str, *, first: bool, seed: int = 0) -> float:
    """A record's place in its reservoir: uniform in [0, 1) for records with feedback or gold
    (`first`), in [1, 2) for the rest; the lowest are kept."""
    digest = hashlib.blake2b(f"{seed}\x00{connector}\x00{external_id}".encode(), digest_size=7).digest()
    u = int.from_bytes(digest, "big") / 2**56
    return u if first else 1.0 + u


def kept_first(feedback: Any, meta: Mapping[str, Any] | None) -> bool:
    return bool(feedback) or any((meta or {}).get(key) not in (None, "") for key in GOLD_KEYS)


def _group(r: Mapping[str, Any]) -> tuple[int, int, date]:
    return (r.get("prompt_id") or 0, r.get("version_id") or 0, utc_day(r["called_at"]))


def _states(conn: Connection, groups: Iterable[tuple[int, int, date]]) -> dict[tuple[int, int, date], Any]:
    wanted = set(groups)
    out = {}
    days = sorted({g[2] for g in wanted})
    versions = sorted({g[1] for g in wanted})
    for start in range(0, len(days), 200):
        for row in conn.execute(select(STATE).where(STATE.c.day.in_(days[start:start + 200]),
                                                    STATE.c.version_id.in_(versions))).mappings():
            key = (row["prompt_id"], row["version_id"], as_date(row["day"]))
            if key in wanted:
                out[key] = row
    return out


def admit(conn: Connection, rows: list[dict[str, Any]], policy: Policy) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split new records (each with a `sample_key`) into those to store and those dropped at once:
    their reservoir is full and their key is above the highest one it keeps, or their key is above
    the threshold its version's earlier days let it expect (`expected_thresholds`)."""
    groups = {_group(r) for r in rows}
    states = _states(conn, groups)
    expected = expected_thresholds(conn, groups, policy)
    limits = dict(expected)  # the lower of the two where both apply
    for g, state in states.items():
        if state["threshold"] is not None and state["kept"] >= policy.per_day:
            limits[g] = min(state["threshold"], limits.get(g, state["threshold"]))
    stored, dropped = [], []
    for r in rows:
        limit = limits.get(_group(r))
        (dropped if limit is not None and r["sample_key"] > limit else stored).append(r)
    return stored, dropped


def expected_thresholds(conn: Connection, groups: Iterable[tuple[int, int, date]],
                        policy: Policy) -> dict[tuple[int, int, date], float]:
    """Per reservoir whose version's earlier days show more calls than per_day × headroom: the key
    above which its records can be dropped unwritten. A day counts when it and the day before it have
    calls (a version's first day is usually cut short by its release); the fewest calls among the
    last HISTORY_DAYS such days is the estimate n, and records with feedback or gold (keys below 1)
    are never above the threshold 1 + per_day × headroom ÷ n."""
    wanted = set(groups)
    if policy.headroom <= 0 or not wanted:
        return {}
    days = sorted({g[2] for g in wanted})
    versions = sorted({g[1] for g in wanted})
    calls: dict[tuple[int, int], dict[date, int]] = {}
    rows = conn.execute(
        select(AGGREGATE.c.prompt_id, AGGREGATE.c.version_id, AGGREGATE.c.day, func.sum(AGGREGATE.c.records))
        .where(AGGREGATE.c.version_id.in_(versions), AGGREGATE.c.day >= days[0] - timedelta(days=HISTORY_DAYS + 1),
               AGGREGATE.c.day < days[-1])
        .group_by(AGGREGATE.c.prompt_id, AGGREGATE.c.version_id, AGGREGATE.c.day))
    for prompt_id, version_id, day, n in rows:
        calls.setdefault((prompt_id, version_id), {})[as_date(day)] = n
    out = {}
    for prompt_id, version_id, day in wanted:
        history = calls.get((prompt_id, version_id), {})
        complete = [history[d] for d in (day - timedelta(days=back) for back in range(1, HISTORY_DAYS + 1))
                    if history.get(d) and history.get(d - timedelta(days=1))]
        if complete:
            share = policy.per_day * policy.headroom / min(complete)
            if share < 1:
                out[(prompt_id, version_id, day)] = 1.0 + share
    return out


def count_kept(conn: Connection, rows: Iterable[Mapping[str, Any]], sign: int = 1) -> set[tuple[int, int, date]]:
    """Add the records stored (sign -1: deleted) to their reservoirs' counts; the groups touched."""
    counts: dict[tuple[int, int, date], int] = {}
    for r in rows:
        g = _group(r)
        counts[g] = counts.get(g, 0) + sign
    if not counts:
        return set()
    insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(STATE)
    statement = insert.on_conflict_do_update(index_elements=["prompt_id", "version_id", "day"],
                                             set_={"kept": STATE.c.kept + insert.excluded.kept})
    stored = sorted(counts.items())
    if sign < 0:  # only rows that exist lose records: an update each, no insert
        for (prompt_id, version_id, day), n in stored:
            conn.execute(STATE.update().where(STATE.c.prompt_id == prompt_id, STATE.c.version_id == version_id,
                                              STATE.c.day == day).values(kept=STATE.c.kept + n))
    else:
        conn.execute(statement, [{"prompt_id": p, "version_id": v, "day": d, "kept": n} for (p, v, d), n in stored])
    return set(counts)


def recount(conn: Connection) -> None:
    """Rebuild every reservoir's count from the stored records (migration 0010's backfill)."""
    conn.execute(STATE.delete())
    day = func.date(LOG.c.called_at)
    rows = conn.execute(select(LOG.c.prompt_id, LOG.c.version_id, day, func.count())
                        .group_by(LOG.c.prompt_id, LOG.c.version_id, day)).all()
    if rows:
        conn.execute(STATE.insert(), [{"prompt_id": p or 0, "version_id": v or 0, "day": as_date(d), "kept": n}
                                      for p, v, d, n in rows])


def _not_pinned() -> list[Any]:
    items, shadows = DatasetItem.__table__, ShadowScore.__table__  # type: ignore[attr-defined]
    return [~exists().where(items.c.log_id == LOG.c.id), ~exists().where(shadows.c.log_id == LOG.c.id)]


def _in_group(prompt_id: int, version_id: int, day: date) -> list[Any]:
    during = [LOG.c.called_at >= day_start(day), LOG.c.called_at < day_start(day + timedelta(days=1))]
    if version_id:  # a version is of one prompt: its reservoir is read from the version's index alone
        return [LOG.c.version_id == version_id, *during]
    return [LOG.c.version_id.is_(None), LOG.c.prompt_id == prompt_id if prompt_id else LOG.c.prompt_id.is_(None),
            *during]


RESERVOIR_KEY = func.coalesce(LOG.c.sample_key, 2.0)  # records stored before 0010 (no key) sort last


def highest_keys(where: list[Any], limit: int) -> Any:
    """The ids and keys of the `limit` records under `where` a trim may drop, highest key first: for a
    version's day, read from ix_logrecord_version_time alone (it holds the keys, migration 0020); the
    columns the tally needs come back from the DELETE."""
    return (select(LOG.c.id, RESERVOIR_KEY).where(*where, *_not_pinned())
            .order_by(RESERVOIR_KEY.desc(), LOG.c.id.desc()).limit(limit))


def trim(conn: Connection, groups: Iterable[tuple[int, int, date]], policy: Policy) -> list[dict[str, Any]]:
    """Delete the records with the highest keys from every reservoir in `groups` that grew past
    `per_day` + slack, back to `per_day`; set its threshold: the highest key among the records left
    that it could drop (a pinned record stays whatever its key, so a new record above that threshold
    would be the first dropped anyway). The records deleted (for the tally)."""
    states = _states(conn, groups)
    deleted: list[dict[str, Any]] = []
    for (prompt_id, version_id, day), state in sorted(states.items()):
        if state["kept"] <= policy.per_day + (policy.slack if state["threshold"] is not None else 0):
            continue
        where = _in_group(prompt_id, version_id, day)
        excess = state["kept"] - policy.per_day
        # one more than it deletes: that record's key is the new threshold, so the group is read once
        found = [tuple(r) for r in conn.execute(highest_keys(where, excess + 1))]
        if len(found) > excess:
            threshold = found.pop()[1]  # pinned records stay whatever their keys: not a threshold
        else:  # every record it may drop goes: the pinned ones are left
            threshold = None
        rows = _delete(conn, [i for i, _ in found], returning=True)
        if threshold is None:
            threshold = conn.execute(select(func.max(RESERVOIR_KEY)).where(*where)).scalar()
        conn.execute(STATE.update().where(STATE.c.id == state["id"]).values(
            kept=state["kept"] - len(rows), threshold=threshold))
        deleted.extend(rows)
    return deleted


def _delete(conn: Connection, ids: list[int], *, returning: bool = False) -> list[dict[str, Any]]:
    """Delete records by id; with `returning`, their DROP_COLUMNS (for the tally)."""
    names = [c.name for c in DROP_COLUMNS]
    deleted: list[dict[str, Any]] = []
    for start in range(0, len(ids), 900):
        statement = LOG.delete().where(LOG.c.id.in_(ids[start:start + 900]))
        if returning:
            rows = conn.execute(statement.returning(*DROP_COLUMNS))
            deleted.extend(dict(zip(names, row, strict=True)) for row in rows)
        else:
            conn.execute(statement)
    return deleted


@dataclass
class SweepReport:
    """What one retention sweep deleted, and the longest write transaction it held."""

    records_deleted: int = 0
    identities_forgotten: int = 0
    transactions: int = 0
    longest_write_ms: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sweep(engine: Engine, *, policy: Policy, now: datetime | None = None) -> SweepReport:
    """Delete full records older than `retention_days` (those a frozen dataset or a shadow score
    points at stay), `sweep_batch` per transaction, each counted in its aggregate first; then forget
    the identities of records that old. Aggregates are kept."""
    now = now or utcnow()
    cutoff_day = utc_day(now - timedelta(days=policy.retention_days))
    cutoff = day_start(cutoff_day)
    report = SweepReport()
    started = clock.perf_counter()
    with engine.connect() as conn:  # one version at a time, read from ix_logrecord_version_time oldest first
        groups = [[LOG.c.version_id == v] for v in versions_of(conn)] + [[LOG.c.version_id.is_(None)]]
    for group in groups:
        while True:
            t0 = clock.perf_counter()
            with engine.begin() as conn:
                rows = [dict(r) for r in conn.execute(
                    select(*DROP_COLUMNS).where(*group, LOG.c.called_at < cutoff, *_not_pinned())
                    .order_by(LOG.c.called_at).limit(policy.sweep_batch)).mappings()]
                if rows:
                    tally = Tally()
                    tally.drop(rows)
                    tally.write(conn)
                    count_kept(conn, rows, sign=-1)
                    _delete(conn, [r["id"] for r in rows])
            if rows:  # a group with nothing to delete took no write
                report.transactions += 1
                report.longest_write_ms = max(report.longest_write_ms, (clock.perf_counter() - t0) * 1000)
            report.records_deleted += len(rows)
            if len(rows) < policy.sweep_batch:
                break
    cutoff_number = (cutoff_day - EPOCH).days
    while True:
        t0 = clock.perf_counter()
        with engine.begin() as conn:
            keys = conn.execute(select(SEEN.c.day, SEEN.c.key).where(SEEN.c.day < cutoff_number)
                                .limit(policy.sweep_batch * 10)).all()
            by_day: dict[int, list[int]] = {}
            for d, k in keys:
                by_day.setdefault(d, []).append(k)
            for d, ks in by_day.items():
                for start in range(0, len(ks), 900):
                    conn.execute(SEEN.delete().where(SEEN.c.day == d, SEEN.c.key.in_(ks[start:start + 900])))
            if len(keys) < policy.sweep_batch * 10:
                conn.execute(STATE.delete().where(STATE.c.day < cutoff_day, STATE.c.kept <= 0))
        report.transactions += 1
        report.longest_write_ms = max(report.longest_write_ms, (clock.perf_counter() - t0) * 1000)
        report.identities_forgotten += len(keys)
        if len(keys) < policy.sweep_batch * 10:
            break
    report.seconds = clock.perf_counter() - started
    return report
