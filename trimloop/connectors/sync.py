"""Pull prompts and logs from connectors into the store: idempotent, crash-safe, incremental.

- Idempotent: versions are unique on (prompt, sha) and logs on (connector, external id); inserts
  use `ON CONFLICT DO NOTHING`, so a second sync adds nothing.
- Crash-safe: logs are written in batches, each in one transaction with the cursor that covers
  it; a sync killed midway resumes from the last committed batch and duplicates nothing.
- Incremental: each connector's log stream resumes from its cursor (`full=True` rereads all).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from trimloop.connectors import registry
from trimloop.connectors.base import Checkpoint, Connector, LogItem, Looked, Problem, PromptItem
from trimloop.connectors.resolve import Resolver
from trimloop.core.errors import TrimloopError
from trimloop.core.identity import version_identity
from trimloop.core.settings import Settings
from trimloop.core.tables import ConnectorCursor, LogRecord, Prompt, PromptVersion, utcnow

LOGS_STREAM = "logs"
MAX_KEPT_PROBLEMS = 200
SQLITE_CACHE_KB = 16 * 1024


@dataclass
class SyncReport:
    """What one connector's sync added, skipped, and why."""

    connector: str
    prompts_added: int = 0
    versions_added: int = 0
    labels_changed: int = 0
    logs_added: int = 0
    logs_already_synced: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason code → count
    problems: list[Problem] = field(default_factory=list)  # the first MAX_KEPT_PROBLEMS
    fatal: str | None = None  # the connector could not be read at all
    looked: list[Looked] = field(default_factory=list)  # where the logs were read, with notices

    @property
    def notices(self) -> list[Problem]:
        """Why an asked-for place gave nothing, with the fix (nothing was skipped)."""
        return [looked.notice for looked in self.looked if looked.notice is not None]

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def add_problem(self, problem: Problem) -> None:
        self.skipped[problem.reason] += 1
        if len(self.problems) < MAX_KEPT_PROBLEMS:
            self.problems.append(problem)

    def to_dict(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "prompts_added": self.prompts_added,
            "versions_added": self.versions_added,
            "labels_changed": self.labels_changed,
            "logs_added": self.logs_added,
            "logs_already_synced": self.logs_already_synced,
            "skipped": dict(self.skipped),
            "problems": [str(p) for p in self.problems],
            "fatal": self.fatal,
            "looked": [str(looked) for looked in self.looked],
            "notices": [str(notice) for notice in self.notices],
        }


def sync(
    *,
    engine: Engine,
    settings: Settings,
    only: list[str] | None = None,
    full: bool = False,
    batch_size: int = 5000,
) -> list[SyncReport]:
    """Sync every configured connector (or those named in `only`); one report each."""
    reports = []
    for name, connector in registry.from_settings(settings, only).items():
        with connector:
            reports.append(sync_connector(engine=engine, connector=connector, full=full,
                                          batch_size=batch_size))
    return reports


def sync_connector(
    *, engine: Engine, connector: Connector, full: bool = False, batch_size: int = 5000
) -> SyncReport:
    """Sync one connector: its prompts (all, labels refreshed), then its logs since the cursor."""
    report = SyncReport(connector=connector.name)
    try:
        _sync_prompts(engine, connector, report)
        _sync_logs(engine, connector, report, full=full, batch_size=batch_size)
    except TrimloopError as exc:
        report.fatal = str(exc)
    return report


def _sync_prompts(engine: Engine, connector: Connector, report: SyncReport) -> None:
    items: list[PromptItem] = []
    damaged: set[str] = set()  # prompts with an unreadable version: leave their labels alone
    for item in connector.read_prompts():
        if not isinstance(item, Problem):
            item = _oversize(item.where or item.name, PROMPT_LENGTHS, item, prompt=item.name) or item
        if isinstance(item, Problem):
            item.stream = "prompts"
            report.add_problem(item)
            damaged.add(item.prompt or "")
        else:
            items.append(item)
    with engine.begin() as conn:
        prompts = {n: (i, c) for i, n, c in conn.execute(select(Prompt.id, Prompt.name, Prompt.connector))}
        wanted: dict[int, dict[int, set[str]]] = {}  # prompt id → version id → labels
        for item in items:
            owner = prompts.get(item.name)
            if owner is not None and owner[1] != connector.name:
                report.add_problem(Problem(
                    item.where or item.name, f"prompt {item.name!r} already comes from connector "
                    f"{owner[1]!r}", "name_taken", "rename one of them; prompt names are global",
                    stream="prompts"))
                continue
            if owner is None:
                pid = conn.execute(insert(Prompt).values(
                    name=item.name, connector=connector.name, external_id=item.external_id,
                    description=item.description, config={}, created_at=utcnow())).inserted_primary_key[0]
                prompts[item.name] = (pid, connector.name)
                report.prompts_added += 1
            pid = prompts[item.name][0]
            vid = _upsert_version(conn, connector.name, pid, item, report)
            wanted.setdefault(pid, {}).setdefault(vid, set()).update(item.labels)
        names = {pid: name for name, (pid, _) in prompts.items()}
        for pid, versions in wanted.items():
            if names[pid] not in damaged:
                _apply_labels(conn, pid, versions, report)


def _upsert_version(conn: Connection, connector: str, pid: int, item: PromptItem,
                    report: SyncReport) -> int:
    template = item.template.dump()
    sha = version_identity(template=template, model=item.model, params=item.params)
    vid = conn.execute(select(PromptVersion.id).where(
        PromptVersion.prompt_id == pid, PromptVersion.sha == sha)).scalar()
    if vid is not None:
        return vid
    report.versions_added += 1
    return conn.execute(insert(PromptVersion).values(
        prompt_id=pid, sha=sha, template=template, model=item.model, params=item.params,
        connector=connector, external_id=item.external_id, external_version=item.external_version,
        labels=sorted(set(item.labels)), created_at=utcnow())).inserted_primary_key[0]


def _apply_labels(conn: Connection, pid: int, versions: dict[int, set[str]], report: SyncReport) -> None:
    """Make the store's labels for one prompt equal the connector's (a label lives on one version)."""
    rows = conn.execute(select(PromptVersion.id, PromptVersion.labels).where(PromptVersion.prompt_id == pid))
    for vid, labels in rows.all():
        want = sorted(versions.get(vid, set()))
        if sorted(labels or []) != want:
            conn.execute(update(PromptVersion).where(PromptVersion.id == vid).values(labels=want))
            report.labels_changed += 1


def _sync_logs(engine: Engine, connector: Connector, report: SyncReport, *, full: bool,
               batch_size: int) -> None:
    with engine.connect() as conn:
        cursor = None if full else read_cursor(conn, connector.name, LOGS_STREAM)
        resolver = Resolver.load(conn)
    batch: list[tuple[LogItem, int, int | None, dict[str, Any]]] = []
    last_cursor: str | None = None
    for item in connector.read_logs(cursor=cursor):
        if isinstance(item, LogItem):
            resolved = _oversize(item.where or item.external_id, LOG_LENGTHS, item) or resolver.resolve(item)
            if isinstance(resolved, Problem):
                report.add_problem(resolved)
            else:
                batch.append((item, *resolved))
        elif isinstance(item, Checkpoint):
            last_cursor = item.cursor
            if len(batch) >= batch_size:
                _flush(engine, connector.name, batch, last_cursor, report)
                batch = []
        elif isinstance(item, Looked):
            report.looked.append(item)
        else:
            report.add_problem(item)
    if last_cursor is not None or batch:
        _flush(engine, connector.name, batch, last_cursor, report)


def _limits(table: Any, fields: dict[str, str]) -> dict[str, tuple[str, int]]:
    """item attribute → (column, the column's VARCHAR length)."""
    return {attr: (column, table.c[column].type.length) for attr, column in fields.items()}


# What the store keeps in bounded text columns. PostgreSQL refuses a longer value (and with it the
# whole batch) where SQLite would store it, so sync checks first and skips the record on both.
PROMPT_LENGTHS = {**_limits(Prompt.__table__, {"name": "name"}),
                  **_limits(PromptVersion.__table__, {"model": "model", "external_id": "external_id",
                                                      "external_version": "external_version"})}
LOG_LENGTHS = _limits(LogRecord.__table__, {"external_id": "external_id", "model": "model"})


def _oversize(where: str, limits: dict[str, tuple[str, int]], item: Any, prompt: str | None = None) -> Problem | None:
    for attr, (column, length) in limits.items():
        value = getattr(item, attr)
        if isinstance(value, str) and len(value) > length:
            return Problem(where, f"the {column} is {len(value)} characters long; the store keeps at most "
                           f"{length}: {value[:40]}…", "too_long", f"shorten the {column} in the source",
                           prompt=prompt)
    return None


def _row(connector: str, item: LogItem, prompt_id: int, version_id: int | None,
         inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "connector": connector, "external_id": item.external_id, "prompt_id": prompt_id,
        "version_id": version_id, "inputs": inputs, "output": item.output, "model": item.model,
        "input_tokens": item.input_tokens, "output_tokens": item.output_tokens, "cost": item.cost,
        "latency_s": item.latency_s, "called_at": item.called_at, "feedback": item.feedback,
        "meta": item.meta,
    }


def _flush(engine: Engine, connector: str, rows: list[tuple[LogItem, int, int | None, dict[str, Any]]],
           cursor: str | None, report: SyncReport) -> None:
    """Insert one batch and move the cursor, in one transaction."""
    with engine.begin() as conn:
        if rows:
            if conn.dialect.name == "sqlite":
                # a bigger page cache keeps index inserts fast once the table outgrows the default 2 MB
                conn.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KB}")
                added = _insert_sqlite(conn, connector, rows)
            else:  # psycopg reports no executemany rowcount: count what RETURNING gives back
                statement = _insert_ignore(conn, LogRecord.__table__).returning(LogRecord.__table__.c.id)
                added = len(conn.execute(statement, [_row(connector, *r) for r in rows]).all())
            report.logs_added += added
            report.logs_already_synced += len(rows) - added
        if cursor is not None:
            write_cursor(conn, connector, LOGS_STREAM, cursor)


_COLUMNS = ("connector", "external_id", "prompt_id", "version_id", "inputs", "output", "model",
            "input_tokens", "output_tokens", "cost", "latency_s", "called_at", "feedback", "meta")
_SQLITE_INSERT = (f"INSERT INTO logrecord ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
                  "ON CONFLICT (connector, external_id) DO NOTHING")


def _insert_sqlite(conn: Connection, connector: str,
                   rows: list[tuple[LogItem, int, int | None, dict[str, Any]]]) -> int:
    """The hot path of a big sync: values serialised here as SQLAlchemy would, one executemany."""
    params = [
        (connector, i.external_id, pid, vid, _json(inputs), i.output, i.model, i.input_tokens,
         i.output_tokens, i.cost, i.latency_s, _sqlite_time(i.called_at), _json(i.feedback), _json(i.meta))
        for i, pid, vid, inputs in rows
    ]
    return conn.exec_driver_sql(_SQLITE_INSERT, params).rowcount  # sqlite3 sums executemany rows


def _sqlite_time(value: datetime) -> str:
    """How SQLAlchemy stores an aware datetime in SQLite: UTC, no zone, microseconds."""
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _json(value: Any) -> str:
    return "{}" if value == {} else "[]" if value == [] else orjson.dumps(value).decode()


def _insert_ignore(conn: Connection, table: Any) -> Any:
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(table).on_conflict_do_nothing(index_elements=["connector", "external_id"])


def read_cursor(conn: Connection, connector: str, stream: str) -> str | None:
    return conn.execute(select(ConnectorCursor.cursor).where(
        ConnectorCursor.connector == connector, ConnectorCursor.stream == stream)).scalar()


def write_cursor(conn: Connection, connector: str, stream: str, cursor: str) -> None:
    values = {"cursor": cursor, "updated_at": utcnow()}
    done = conn.execute(update(ConnectorCursor).where(
        ConnectorCursor.connector == connector, ConnectorCursor.stream == stream).values(**values))
    if done.rowcount == 0:
        conn.execute(insert(ConnectorCursor).values(connector=connector, stream=stream, **values))
