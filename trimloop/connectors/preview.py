"""A dry run of one connector's sync: what it sees, what the next sync would store and what it would
skip (and why), writing nothing. `trimloop doctor` reports it.

Logs are read from the connector's cursor (what the next sync would read), or from the start with
`full`, and resolved against the store's prompts plus the ones the connector holds now, so a store
that was never synced is judged as its first sync would judge it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from trimloop.connectors.base import Checkpoint, Connector, LogItem, Looked, Problem, PromptItem
from trimloop.connectors.resolve import Resolver
from trimloop.connectors.sync import (LOG_LENGTHS, LOGS_STREAM, PROMPT_LENGTHS, _oversize, _unstorable_prompt,
                                      read_cursor, unstorable)
from trimloop.core.errors import TrimloopError

PRODUCTION = "production"


@dataclass
class PromptSeen:
    """One prompt in the connector's store."""

    name: str
    versions: int = 0
    production: str | None = None  # the external version labelled production
    model: str | None = None  # that version's model


@dataclass
class Preview:
    connector: str
    prompts: dict[str, PromptSeen] = field(default_factory=dict)
    prompt_problems: list[Problem] = field(default_factory=list)
    logs_read: int = 0  # log records read: matched + skipped
    matched: Counter[str] = field(default_factory=Counter)  # prompt name → logs the next sync would store
    with_cost: Counter[str] = field(default_factory=Counter)  # prompt name → of those, with a logged cost
    skipped: Counter[str] = field(default_factory=Counter)  # reason → logs the next sync would skip
    examples: dict[str, Problem] = field(default_factory=dict)  # the first skipped log for each reason
    looked: list[Looked] = field(default_factory=list)
    from_cursor: bool = False  # read from where the last sync stopped (else from the start)
    stopped_after: int | None = None  # reading stopped at max_logs records
    error: TrimloopError | None = None  # the connector could not be read at all


def preview_connector(*, connector: Connector, engine: Engine | None = None, full: bool = False,
                      max_logs: int | None = None) -> Preview:
    """What `sync_connector` would do now, without writing: prompts and versions it sees, logs it
    would store per prompt, logs it would skip by reason, and where it looked."""
    preview = Preview(connector=connector.name)
    resolver, cursor = Resolver(), None
    if engine is not None and inspect(engine).has_table("connectorcursor"):
        with engine.connect() as conn:
            cursor = None if full else read_cursor(conn, connector.name, LOGS_STREAM)
            resolver = Resolver.load(conn)
    preview.from_cursor = cursor is not None
    try:
        items = _read_prompts(connector, preview)
        resolver.extend(items)
        names = {pid: name for name, pid in resolver.prompts.items()}
        _read_logs(connector, preview, resolver, names, cursor, max_logs)
    except TrimloopError as exc:
        preview.error = exc
    return preview


def _read_prompts(connector: Connector, preview: Preview) -> list[PromptItem]:
    items = []
    for item in connector.read_prompts():
        if not isinstance(item, Problem):
            where = item.where or item.name
            item = (_oversize(where, PROMPT_LENGTHS, item, prompt=item.name)
                    or _unstorable_prompt(where, item) or item)
        if isinstance(item, Problem):
            item.stream = "prompts"
            preview.prompt_problems.append(item)
            continue
        items.append(item)
        seen = preview.prompts.setdefault(item.name, PromptSeen(item.name))
        seen.versions += 1
        if PRODUCTION in item.labels:
            seen.production, seen.model = item.external_version, item.model
    return items


def _read_logs(connector: Connector, preview: Preview, resolver: Resolver, names: dict[int, str],
               cursor: str | None, max_logs: int | None) -> None:
    stream = connector.read_logs(cursor=cursor)
    try:
        for item in stream:
            if isinstance(item, Looked):
                preview.looked.append(item)
                continue
            if isinstance(item, Checkpoint):
                continue
            preview.logs_read += 1  # a record: one the next sync stores, or one it skips
            if isinstance(item, LogItem):
                where = item.where or item.external_id
                resolved = _oversize(where, LOG_LENGTHS, item) or unstorable(where, item) or resolver.resolve(item)
                if isinstance(resolved, Problem):
                    _skip(preview, resolved)
                else:
                    name = names.get(resolved[0], "?")
                    preview.matched[name] += 1
                    preview.with_cost[name] += item.cost is not None
            else:
                _skip(preview, item)
            if max_logs is not None and preview.logs_read >= max_logs:
                preview.stopped_after = preview.logs_read
                return
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _skip(preview: Preview, problem: Problem) -> None:
    preview.skipped[problem.reason] += 1
    preview.examples.setdefault(problem.reason, problem)
