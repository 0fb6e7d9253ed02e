"""Pull prompts and logs from connectors into the store: idempotent, crash-safe, incremental.

- Idempotent: versions are unique on (prompt, sha) and logs on (connector, external id); inserts
  use `ON CONFLICT DO NOTHING`, so a second sync adds nothing.
- Crash-safe: logs are written in batches, each in one transaction with the cursor that covers
  it; a sync killed midway resumes from the last committed batch and duplicates nothing.
- Incremental: each connector's log stream resumes from its cursor (`full=True` rereads all).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from trimloop.connectors import registry
from trimloop.connectors.base import Checkpoint, Connector, LogItem, Looked, Problem, PromptItem
from trimloop.connectors.price_check import PriceCheck, PriceGap
from trimloop.connectors.resolve import Resolver
from trimloop.core import reservoir, store, traffic
from trimloop.core.errors import TrimloopError
from trimloop.core.identity import version_identity
from trimloop.core.reservoir import Policy
from trimloop.core.settings import Settings
from trimloop.core.tables import (MAX_COST_PER_CALL, MAX_LATENCY_S, MAX_TOKENS, ConnectorCursor, LogRecord, Prompt,
                                  PromptLabel, PromptVersion, as_utc, utcnow)

LOGS_STREAM = "logs"
MAX_KEPT_PROBLEMS = 200
SQLITE_CACHE_KB = 16 * 1024
SQLITE_DEFAULT_CACHE_KB = 2000  # SQLite's own default page cache (cache_size=-2000)
BATCH_SIZE = 20_000  # records a sync writes per transaction (fewer, bigger commits: see _sync_logs)
BATCH_TEXT_CHARS = 32_000_000  # ... or fewer, when their text adds up to this many characters


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
    price_gaps: list[PriceGap] = field(default_factory=list)  # logged costs off tokens × prices by > 5 %

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
            "price_gaps": [gap.to_dict() for gap in self.price_gaps],
        }


def sync(
    *,
    engine: Engine,
    settings: Settings,
    only: list[str] | None = None,
    full: bool = False,
    batch_size: int = BATCH_SIZE,
) -> list[SyncReport]:
    """Sync every configured connector (or those named in `only`); one report each."""
    reports = []
    for name, connector in registry.from_settings(settings, only).items():
        config = settings.connectors.get(name)
        with connector:
            reports.append(sync_connector(engine=engine, connector=connector, full=full, batch_size=batch_size,
                                          sample_rate=config.sample_rate if config is not None else None,
                                          settings=settings))
    return reports


def sync_connector(
    *, engine: Engine, connector: Connector, full: bool = False, batch_size: int = BATCH_SIZE,
    sample_rate: float | None = None, settings: Settings | None = None,
) -> SyncReport:
    """Sync one connector: its prompts (all, labels refreshed), then its logs since the cursor.
    `sample_rate` ([connectors.NAME] sample_rate) is given to every log whose record carries none. With
    `settings`, logged costs are checked against tokens × the catalog's prices (`price_check`)."""
    report = SyncReport(connector=connector.name)
    check = PriceCheck(settings) if settings is not None else None
    try:
        _sync_prompts(engine, connector, report)
        _sync_logs(engine, connector, report, full=full, batch_size=batch_size, sample_rate=sample_rate,
                   check=check, policy=Policy.of(settings))
    except TrimloopError as exc:
        report.fatal = str(exc)
    if check is not None:
        report.price_gaps = check.flagged()
    return report


def _sync_prompts(engine: Engine, connector: Connector, report: SyncReport) -> None:
    items: list[PromptItem] = []
    damaged: set[str] = set()  # prompts with an unreadable version: leave their labels alone
    for item in connector.read_prompts():
        if not isinstance(item, Problem):
            where = item.where or item.name
            item = (_oversize(where, PROMPT_LENGTHS, item, prompt=item.name)
                    or _unstorable_prompt(where, item) or item)
        if isinstance(item, Problem):
            item.stream = "prompts"
            report.add_problem(item)
            damaged.add(item.prompt or "")
        else:
            items.append(item)
    _concurrently([report], lambda attempts: _store_prompts(engine, connector, items, damaged, attempts[0]))


def _store_prompts(engine: Engine, connector: Connector, items: list[PromptItem], damaged: set[str],
                   report: SyncReport) -> None:
    with engine.begin() as conn:
        prompts = {n: (i, c) for i, n, c in conn.execute(select(Prompt.id, Prompt.name, Prompt.connector))}
        wanted: dict[int, dict[int, set[str]]] = {}  # prompt id → version id → labels
        new: set[int] = set()  # versions this sync adds
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
            vid = _upsert_version(conn, connector.name, pid, item, report, new)
            wanted.setdefault(pid, {}).setdefault(vid, set()).update(item.labels)
        names = {pid: name for name, (pid, _) in prompts.items()}
        for pid, versions in wanted.items():
            _apply_labels(conn, pid, versions, new, names[pid] in damaged, report)


def _upsert_version(conn: Connection, connector: str, pid: int, item: PromptItem,
                    report: SyncReport, new: set[int]) -> int:
    template = item.template.dump()
    sha = version_identity(template=template, model=item.model, params=item.params)
    vid = conn.execute(select(PromptVersion.id).where(
        PromptVersion.prompt_id == pid, PromptVersion.sha == sha)).scalar()
    if vid is not None:
        return vid
    report.versions_added += 1
    vid = conn.execute(insert(PromptVersion).values(
        prompt_id=pid, sha=sha, template=template, model=item.model, params=item.params,
        connector=connector, external_id=item.external_id, external_version=item.external_version,
        created_at=utcnow())).inserted_primary_key[0]
    new.add(vid)
    return vid


def _apply_labels(conn: Connection, pid: int, versions: dict[int, set[str]], new: set[int], damaged: bool,
                  report: SyncReport) -> None:
    """Move the prompt's labels to where the connector has them. A label the connector reports on
    two versions goes to the newer one. A prompt with an unreadable version (`damaged`) keeps its
    labels, except those the connector reports on versions this sync adds. `labels_changed`
    counts the versions already stored whose labels changed."""
    want: dict[str, int] = {}
    for vid in sorted(versions):
        if not damaged or vid in new:
            want.update(dict.fromkeys(versions[vid], vid))
    current = store.prompt_labels(session=conn, prompt_id=pid)
    gone = [] if damaged else [label for label in current if label not in want]
    changed: set[int] = set()
    for label in gone:
        changed.add(current[label])
        store.move_label(session=conn, prompt_id=pid, label=label, version_id=None)
    for label, vid in sorted(want.items()):
        before = store.move_label(session=conn, prompt_id=pid, label=label, version_id=vid)
        if before != vid:
            changed.update(v for v in (before, vid) if v is not None)
    report.labels_changed += len(changed - new)


@dataclass
class PushedLogs:
    """One push of log records (`POST /v1/traces`), resolved and checked, not yet stored; `report`
    counts both steps. `prepare_logs` makes it, `store_logs` stores it the way a sync stores a
    connector's logs: idempotently on (source, external id), with reservoirs, identities and
    traffic aggregates."""

    rows: list[tuple[LogItem, int, int | None, dict[str, Any]]]
    report: SyncReport

    def __len__(self) -> int:
        return len(self.rows)


def prepare_logs(*, engine: Engine, source: str, items: Iterable[LogItem | Problem],
                 settings: Settings | None = None) -> PushedLogs:
    """Resolve pushed records to prompts and versions and check them (reads only): the records to
    store, and the report with those that cannot be stored and why."""
    report = SyncReport(connector=source)
    check = PriceCheck(settings) if settings is not None else None
    with engine.connect() as conn:
        resolver = Resolver.load(conn)
        names = dict(conn.execute(select(Prompt.id, Prompt.name)).all()) if check is not None else {}
    rows = _resolved(items, report, resolver, names, check, None)
    if check is not None:
        report.price_gaps = check.flagged()
    return PushedLogs(rows, report)


def store_logs(*, engine: Engine, source: str, pushed: list[PushedLogs], settings: Settings | None = None) -> None:
    """Store several pushes in one transaction (reservoirs, identities, one write of the traffic
    aggregates they touch), each counted in its own report; nothing is kept when it raises. A record
    sent in two of them counts once."""
    pushed = [p for p in pushed if p.rows]
    if not pushed:
        return
    policy = Policy.of(settings)

    def write(attempts: list[SyncReport]) -> None:
        with engine.begin() as conn:
            _cache_pages(conn)
            tally = traffic.Tally()
            for p, attempt in zip(pushed, attempts, strict=True):
                _ingest(conn, source, p.rows, attempt, policy, tally)
            tally.write(conn)
            # a server's pushes go through whichever pooled connection is free: each kept its own 16 MB
            # of pages (the SQLite receiver's server at 10M: 503 MB); a sync reuses its one connection
            _cache_pages(conn, SQLITE_DEFAULT_CACHE_KB)

    _concurrently([p.report for p in pushed], write)


def _resolved(items: Iterable[LogItem | Problem], report: SyncReport, resolver: Resolver, names: dict[int, str],
              check: PriceCheck | None, sample_rate: float | None) -> list[tuple[LogItem, int, int | None, dict[str, Any]]]:
    batch: list[tuple[LogItem, int, int | None, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, LogItem):
            _take(item, batch, report, resolver, names, check, sample_rate)
        else:
            report.add_problem(item)
    return batch


def _take(item: LogItem, batch: list[tuple[LogItem, int, int | None, dict[str, Any]]], report: SyncReport,
          resolver: Resolver, names: dict[int, str], check: PriceCheck | None, sample_rate: float | None) -> None:
    """Resolve one record into `batch`, or count the Problem that stops it."""
    where = item.where or item.external_id
    if item.sample_rate is None:
        item.sample_rate = sample_rate
    resolved = _oversize(where, LOG_LENGTHS, item) or unstorable(where, item) or resolver.resolve(item)
    if isinstance(resolved, Problem):
        report.add_problem(resolved)
    else:
        batch.append((item, *resolved))
        if check is not None:
            check.check(item, names.get(resolved[0]) or item.prompt or f"prompt {resolved[0]}")


def _sync_logs(engine: Engine, connector: Connector, report: SyncReport, *, full: bool,
               batch_size: int, sample_rate: float | None = None, check: PriceCheck | None = None,
               policy: Policy | None = None) -> None:
    policy = policy or Policy()
    with engine.connect() as conn:
        cursor = None if full else read_cursor(conn, connector.name, LOGS_STREAM)
        resolver = Resolver.load(conn)
        names = dict(conn.execute(select(Prompt.id, Prompt.name)).all()) if check is not None else {}
    # a transaction per batch: every batch rewrites the pages of the identity indexes it touches, which
    # are random (a hash of the id), so bigger batches write each page fewer times (SQLite at 1M calls:
    # commits 8.6 s at 5,000 records, 4.1 s at 20,000); long texts cut a batch short to bound memory
    batch: list[tuple[LogItem, int, int | None, dict[str, Any]]] = []
    chars = 0
    last_cursor: str | None = None
    for item in connector.read_logs(cursor=cursor):
        if isinstance(item, LogItem):
            chars += _text_chars(item)
            _take(item, batch, report, resolver, names, check, sample_rate)
        elif isinstance(item, Checkpoint):
            last_cursor = item.cursor
            if len(batch) >= batch_size or chars >= BATCH_TEXT_CHARS:
                _flush(engine, connector.name, batch, last_cursor, report, policy)
                batch, chars = [], 0
        elif isinstance(item, Looked):
            report.looked.append(item)
        else:
            report.add_problem(item)
    if last_cursor is not None or batch:
        _flush(engine, connector.name, batch, last_cursor, report, policy)


def _text_chars(item: LogItem) -> int:
    """About how much text a record holds: its output, inputs and rendered messages (100 for each
    value that is not a string)."""
    chars = len(item.output or "")
    for value in (item.inputs or {}).values():
        chars += len(value) if type(value) is str else 100
    rendered = item.rendered
    if type(rendered) is str:
        chars += len(rendered)
    elif rendered:
        for message in rendered:
            content = message.get("content") if type(message) is dict else None
            chars += len(content) if type(content) is str else 100
    return chars


def _limits(table: Any, fields: dict[str, str]) -> dict[str, tuple[str, int]]:
    """item attribute → (column, the column's VARCHAR length)."""
    return {attr: (column, table.c[column].type.length) for attr, column in fields.items()}


# What the store keeps in bounded text columns. PostgreSQL refuses a longer value (and with it the
# whole batch) where SQLite would store it, so sync checks first and skips the record on both.
PROMPT_LENGTHS = {**_limits(Prompt.__table__, {"name": "name"}),
                  **_limits(PromptVersion.__table__, {"model": "model", "external_id": "external_id",
                                                      "external_version": "external_version"}),
                  **_limits(PromptLabel.__table__, {"labels": "label"})}
LOG_LENGTHS = _limits(LogRecord.__table__, {"external_id": "external_id", "model": "model"})


def _oversize(where: str, limits: dict[str, tuple[str, int]], item: Any, prompt: str | None = None) -> Problem | None:
    for attr, (column, length) in limits.items():
        value = getattr(item, attr)
        if isinstance(value, list):  # a prompt version's labels
            value = next((label for label in value if isinstance(label, str) and len(label) > length), None)
        if isinstance(value, str) and len(value) > length:
            return Problem(where, f"the {column} is {len(value)} characters long; the store keeps at most "
                           f"{length}: {value[:40]}…", "too_long", f"shorten the {column} in the source",
                           prompt=prompt)
    return None


_BOUNDS = {"cost": MAX_COST_PER_CALL, "latency_s": MAX_LATENCY_S}
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


def unstorable(where: str, item: LogItem) -> Problem | None:
    """A log record the store must not take: a NUL anywhere (PostgreSQL refuses it in text and
    JSON, and with it the whole batch), a non-finite number, or a cost or latency out of bounds."""
    for attr, bound in _BOUNDS.items():
        value = getattr(item, attr)
        if value is not None and not (type(value) in (int, float) and 0 <= value <= bound):  # NaN fails both
            return Problem(where, f"{attr} is {value!r}; it must be a number from 0 to {bound:g}", "out_of_range",
                           f"check the {attr} in the source ({'dollars' if attr == 'cost' else 'seconds'})")
    rate = item.sample_rate
    if rate is not None and not (type(rate) in (int, float) and 0 < rate <= 1):  # NaN fails too
        return Problem(where, f"sample_rate is {rate!r}; it must be a share of calls above 0 and at most 1",
                       "out_of_range", "write the share of calls that were logged, e.g. 0.01 for one in a hundred, "
                       "or leave it out when every call is logged")
    for attr in TOKEN_FIELDS:
        value = getattr(item, attr)
        if value is not None and not (type(value) is int and 0 <= value <= MAX_TOKENS):
            return Problem(where, f"{attr} is {value!r}; it must be a whole number from 0 to {MAX_TOKENS}",
                           "out_of_range", f"check the {attr} in the source")
    if item.plain_text:
        return None
    fields = {"id": item.external_id, "prompt": item.prompt, "version": item.version, "output": item.output,
              "model": item.model, "inputs": item.inputs, "messages": item.rendered,
              "feedback": item.feedback, "meta": item.meta}
    found = _first_unstorable(fields)
    if found is None:
        return None
    field, nul = found
    return _nul_problem(where, field) if nul else _non_finite_problem(where, field)


def _unstorable_prompt(where: str, item: PromptItem) -> Problem | None:
    """A prompt version with a NUL in any text or a non-finite number in its params."""
    found = _first_unstorable(_prompt_fields(item))
    if found is None:
        return None
    field, nul = found
    return (_nul_problem if nul else _non_finite_problem)(where, field, prompt=item.name)


def _prompt_fields(item: PromptItem) -> dict[str, Any]:
    return {"name": item.name, "template": item.template.dump(), "model": item.model, "params": item.params,
            "description": item.description, "labels": item.labels, "version": item.external_version}


def _first_unstorable(value: dict[str, Any]) -> tuple[str, bool] | None:
    """The dotted path of the first string or key holding a NUL (True) or float that is inf or
    nan (False); None when there is neither. The path is built only when something is found."""
    found = _walk(value)
    if found is None:
        return None
    parts, nul = found
    path = ""
    for part in reversed(parts):
        path += f"[{part}]" if type(part) is int else f".{part}" if path else str(part)
    return (f"{path!r} (a key)" if nul == "key" else path), bool(nul)


def _walk(value: Any) -> tuple[list[Any], bool | str] | None:
    kind = type(value)
    if kind is str:
        return ([], True) if "\x00" in value else None
    if kind is float:
        return None if math.isfinite(value) else ([], False)
    if kind is dict:
        pairs: Any = value.items()
    elif kind is list:
        pairs = enumerate(value)
    else:
        return None
    for key, inner in pairs:
        if type(key) is str and "\x00" in key:
            return [key], "key"
        inner_kind = type(inner)
        if inner_kind is str:
            if "\x00" in inner:
                return [key], True
        elif inner_kind not in _SCALARS:
            found = _walk(inner)
            if found:
                found[0].append(key)
                return found
    return None


_SCALARS = frozenset((int, bool, type(None)))


def _nul_problem(where: str, field: str | None, prompt: str | None = None) -> Problem | None:
    if field is None:
        return None
    return Problem(where, f"{field} contains a NUL character (\\u0000), which the store cannot hold",
                   "nul_character", "remove the NUL characters in the source (often a bug in the logging code)",
                   stream="logs" if prompt is None else "prompts", prompt=prompt)


def _non_finite_problem(where: str, field: str | None, prompt: str | None = None) -> Problem | None:
    if field is None:
        return None
    return Problem(where, f"{field} is not a finite number (Infinity or NaN)", "out_of_range",
                   "write a finite number, or null when the value is unknown", prompt=prompt)


def _row(connector: str, item: LogItem, prompt_id: int, version_id: int | None,
         inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "connector": connector, "external_id": item.external_id, "prompt_id": prompt_id,
        "version_id": version_id, "inputs": inputs, "output": item.output, "model": item.model,
        "input_tokens": item.input_tokens, "output_tokens": item.output_tokens, "cost": item.cost,
        "latency_s": item.latency_s, "called_at": item.called_at, "feedback": item.feedback,
        "meta": item.meta, "sample_rate": item.sample_rate, "cached_input_tokens": item.cached_input_tokens,
        "cache_write_tokens": item.cache_write_tokens, "reasoning_tokens": item.reasoning_tokens,
        "batch": bool(item.batch),
    }


def _concurrently(reports: list[SyncReport], write: Callable[[list[SyncReport]], None]) -> None:
    """Run one write transaction, once more if a concurrent sync of the same store inserted the same
    prompt, version or cursor first (the retry reads its rows); `write` counts into fresh reports,
    one per report, merged into `reports` only when it commits."""
    for last in (False, True):
        attempts = [SyncReport(connector=r.connector) for r in reports]
        try:
            write(attempts)
        except IntegrityError:
            if last:
                raise
            continue
        for report, attempt in zip(reports, attempts, strict=True):
            _merge(report, attempt)
        return


def _merge(report: SyncReport, attempt: SyncReport) -> None:
    """Add a committed attempt's counts and problems to `report`."""
    for name in ("prompts_added", "versions_added", "labels_changed", "logs_added", "logs_already_synced"):
        setattr(report, name, getattr(report, name) + getattr(attempt, name))
    report.skipped.update(attempt.skipped)
    report.problems.extend(attempt.problems[:MAX_KEPT_PROBLEMS - len(report.problems)])


def _flush(engine: Engine, connector: str, rows: list[tuple[LogItem, int, int | None, dict[str, Any]]],
           cursor: str | None, report: SyncReport, policy: Policy) -> None:
    """Insert one batch, add it to the traffic aggregates and move the cursor, in one transaction."""
    _concurrently([report], lambda attempts: _write_batch(engine, connector, rows, cursor, attempts[0], policy))


def _write_batch(engine: Engine, connector: str, rows: list[tuple[LogItem, int, int | None, dict[str, Any]]],
                 cursor: str | None, report: SyncReport, policy: Policy) -> None:
    with engine.begin() as conn:
        if rows:
            _cache_pages(conn)
            _ingest(conn, connector, rows, report, policy)
        if cursor is not None:
            write_cursor(conn, connector, LOGS_STREAM, cursor)


def _cache_pages(conn: Connection, kb: int = SQLITE_CACHE_KB) -> None:
    if conn.dialect.name == "sqlite":
        # a bigger page cache keeps index inserts fast once the table outgrows the default 2 MB;
        # back to the default, the connection frees the pages past it
        conn.exec_driver_sql(f"PRAGMA cache_size=-{kb}")


def _ingest(conn: Connection, connector: str, rows: list[tuple[LogItem, int, int | None, dict[str, Any]]],
            report: SyncReport, policy: Policy, tally: traffic.Tally | None = None) -> None:
    """Claim each record's identity (a record seen before, stored or dropped, adds nothing), store
    the new ones its reservoir admits, trim reservoirs that grew too big, and add every new call to
    its traffic aggregate: all in the caller's transaction. With `tally`, the calls are added to it
    for the caller to write once (several pushes in one transaction)."""
    identities = [(traffic.day_number(item.called_at), traffic.record_key(connector, item.external_id))
                  for item, *_ in rows]
    claimed = traffic.claim(conn, identities)
    fresh: list[dict[str, Any]] = []
    old: list[tuple[int, tuple[LogItem, int, int | None, dict[str, Any]]]] = []  # (key, row)
    source: dict[str, tuple[LogItem, int, int | None, dict[str, Any]]] = {}
    for identity, row in zip(identities, rows, strict=True):
        if identity in claimed:
            claimed.discard(identity)  # a record twice in one batch counts once
            item = row[0]
            source[item.external_id] = row
            record = _row(connector, *row)
            record["key"] = identity[1]
            record["sample_key"] = reservoir.sample_key(connector, item.external_id, seed=policy.seed,
                                                        first=reservoir.kept_first(item.feedback, item.meta))
            fresh.append(record)
        else:
            old.append((identity[1], row))
    stored, dropped = reservoir.admit(conn, fresh, policy)
    inserted = _insert_new(conn, connector, stored)
    if len(inserted) < len(stored):  # stored under the same id on another day: the same call, or another?
        added = {r["external_id"] for r in inserted}
        old.extend((r["key"], source[r["external_id"]]) for r in stored if r["external_id"] not in added)
    own = tally is None
    tally = traffic.Tally() if tally is None else tally
    tally.add(inserted)
    tally.add(dropped)
    tally.drop(dropped)
    groups = reservoir.count_kept(conn, inserted)
    tally.drop(reservoir.trim(conn, groups, policy))
    if own:
        tally.write(conn)
    report.logs_added += len(inserted) + len(dropped)
    report.logs_already_synced += len(old)
    if old:  # stored already: the same call again, or another one under the same id?
        for problem in _conflicts(conn, connector, old):
            report.logs_already_synced -= 1
            report.add_problem(problem)


def _insert_new(conn: Connection, connector: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert records whose identity was just claimed; those already stored (a record older than the
    remembered identities, kept in a frozen dataset) are left out. The records inserted."""
    if not records:
        return []
    if conn.dialect.name == "sqlite":
        before = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM logrecord").scalar()
        added = _insert_sqlite(conn, records)
        if added == len(records):
            return records
        ids = {row[0] for row in conn.exec_driver_sql(
            "SELECT external_id FROM logrecord WHERE id > ? AND connector = ?", (before, connector))}
    else:
        ids = _insert_postgresql(conn, records)
        if len(ids) == len(records):
            return records
    return [r for r in records if r["external_id"] in ids]


def _conflicts(conn: Connection, connector: str,
               rows: list[tuple[int, tuple[LogItem, int, int | None, dict[str, Any]]]]) -> list[Problem]:
    """Records whose id is stored with a different call (time, inputs or output): a source that
    reuses ids would otherwise lose calls silently, counted as "already synced". Found by the
    identity's 64-bit key (`rows` are (key, row) pairs), so a different id under the same key (a hash
    collision) is reported too."""
    table = LogRecord.__table__
    ids = list(dict.fromkeys(key for key, _ in rows))
    stored: dict[int, tuple[str, str, datetime, Any, Any]] = {}
    for start in range(0, len(ids), 1000):
        query = select(table.c.key, table.c.connector, table.c.external_id, table.c.called_at, table.c.inputs,
                       table.c.output).where(table.c.key.in_(ids[start:start + 1000]))
        stored.update((key, (source, eid, as_utc(at), inputs, output))
                      for key, source, eid, at, inputs, output in conn.execute(query))
    problems = []
    for key, (item, _, _, inputs) in rows:
        kept = stored.get(key)
        if kept is None:
            continue
        source, eid, *call = kept
        if (source, eid) != (connector, item.external_id):
            problems.append(Problem(
                item.where or item.external_id, f"id {item.external_id!r} has the same 64-bit identity key as "
                f"the stored record {eid!r} of connector {source!r} (a hash collision); this record is not synced",
                "identity_collision", "give this call another id (any change to it gives another key)"))
            continue
        mine = (item.called_at, inputs, item.output)
        differs = [name for name, old, new in zip(("called_at", "inputs", "output"), call, mine, strict=True)
                   if old != new]
        if differs:
            problems.append(Problem(
                item.where or item.external_id, f"id {item.external_id!r} is already stored for another call "
                f"(different {', '.join(differs)}); this record is not synced", "conflicting_duplicate",
                "give every call its own id; a call sent again must repeat the same record"))
    return problems


_COLUMNS = ("connector", "external_id", "key", "prompt_id", "version_id", "inputs", "output", "model",
            "input_tokens", "output_tokens", "cost", "latency_s", "called_at", "feedback", "meta", "sample_rate",
            "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "batch", "sample_key")
_SQLITE_INSERT = (f"INSERT INTO logrecord ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
                  "ON CONFLICT (key) DO NOTHING")


def _insert_sqlite(conn: Connection, records: list[dict[str, Any]]) -> int:
    """The hot path of a big sync: values serialised here as SQLAlchemy would, one executemany."""
    params = [
        (r["connector"], r["external_id"], r["key"], r["prompt_id"], r["version_id"], _json(r["inputs"]), r["output"],
         r["model"], r["input_tokens"], r["output_tokens"], r["cost"], r["latency_s"], _sqlite_time(r["called_at"]),
         _json(r["feedback"]), _json(r["meta"]), r["sample_rate"], r["cached_input_tokens"], r["cache_write_tokens"],
         r["reasoning_tokens"], 1 if r["batch"] else 0, r["sample_key"])
        for r in records
    ]
    return conn.exec_driver_sql(_SQLITE_INSERT, params).rowcount  # sqlite3 sums executemany rows


_PG_INSERT = (f"INSERT INTO logrecord ({', '.join(_COLUMNS)}) VALUES "
              f"({', '.join('%s::json' if c in ('inputs', 'feedback', 'meta') else '%s' for c in _COLUMNS)}) "
              "ON CONFLICT (key) DO NOTHING RETURNING external_id")


def _insert_postgresql(conn: Connection, records: list[dict[str, Any]]) -> set[str]:
    """The hot path on PostgreSQL: one short statement executed for every record through psycopg's
    pipeline mode (executemany), not SQLAlchemy's multi-row VALUES, whose long text psycopg would
    parse again for every batch. The external ids inserted (a conflicting row returns none)."""
    params = [
        (r["connector"], r["external_id"], r["key"], r["prompt_id"], r["version_id"], _json(r["inputs"]), r["output"],
         r["model"], r["input_tokens"], r["output_tokens"], r["cost"], r["latency_s"], r["called_at"],
         _json(r["feedback"]), _json(r["meta"]), r["sample_rate"], r["cached_input_tokens"], r["cache_write_tokens"],
         r["reasoning_tokens"], bool(r["batch"]), r["sample_key"])
        for r in records
    ]
    ids: set[str] = set()
    with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.executemany(_PG_INSERT, params, returning=True)
        while True:
            ids.update(row[0] for row in cursor.fetchall())
            if not cursor.nextset():
                break
    return ids


def _sqlite_time(value: datetime) -> str:
    """How SQLAlchemy stores an aware datetime in SQLite: UTC, no zone, microseconds."""
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _json(value: Any) -> str:
    return "{}" if value == {} else "[]" if value == [] else orjson.dumps(value).decode()


def read_cursor(conn: Connection, connector: str, stream: str) -> str | None:
    return conn.execute(select(ConnectorCursor.cursor).where(
        ConnectorCursor.connector == connector, ConnectorCursor.stream == stream)).scalar()


def write_cursor(conn: Connection, connector: str, stream: str, cursor: str) -> None:
    values = {"cursor": cursor, "updated_at": utcnow()}
    done = conn.execute(update(ConnectorCursor).where(
        ConnectorCursor.connector == connector, ConnectorCursor.stream == stream).values(**values))
    if done.rowcount == 0:
        conn.execute(insert(ConnectorCursor).values(connector=connector, stream=stream, **values))
