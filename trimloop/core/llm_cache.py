"""The content-addressed response cache, kept in the database: a rerun spends nothing.

Key = sha256 of (model, messages or text, params, seed). Measured on 2 cores, SQLAlchemy's
per-statement overhead and one commit per response were half the gateway's CPU per call, so
the cache talks to one raw DB-API connection: a hit is one primary-key SELECT, and new
responses are written in group commits (one `executemany` for every response that arrived
while the previous commit was running).

`store()` returns only once the response is committed: a paid call the gateway has handed to
its caller survives the process being killed (SIGKILL, OOM) the next instant, so a resumed run
never pays for it again. Each row also names the run that paid for it (`run_id`), written in
the same commit, which is how a resumed run learns what its earlier attempt spent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from trimloop.core.identity import sha256_of
from trimloop.core.tables import utcnow

log = logging.getLogger("trimloop.core.llm_cache")


@dataclass(frozen=True)
class CachedCall:
    output: str
    input_tokens: int
    output_tokens: int
    cost: float
    latency_s: float
    # the token classes the provider reported (None: not reported), so a hit bills and measures
    # like the call it replays (a reasoning lever's saving is read from reasoning tokens)
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None


def cache_key(*, model: str, prompt: Any, params: dict[str, Any], seed: int | None, scope: str | None = None) -> str:
    """The content address of a call; `scope` (e.g. "control of run 12") keeps a call apart from
    the same request made elsewhere, so it is answered afresh once per scope, then from the cache."""
    content = {"model": model, "prompt": prompt, "params": params, "seed": seed}
    return sha256_of(content if scope is None else content | {"scope": scope})


class ResponseCache:
    def __init__(self, engine: Engine):
        self.engine = engine
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._select_sql = (
            "SELECT output, input_tokens, output_tokens, cost, latency_s, cached_tokens, cache_write_tokens, "
            f"reasoning_tokens FROM cachedresponse WHERE key = {mark}"
        )
        self._insert_sql = (
            "INSERT INTO cachedresponse (key, model, output, input_tokens, output_tokens, cost, latency_s, "
            "cached_tokens, cache_write_tokens, reasoning_tokens, created_at, run_id) "
            f"VALUES ({', '.join([mark] * 12)}) ON CONFLICT (key) DO NOTHING"
        )
        self._paid_sql = f"SELECT count(*), coalesce(sum(cost), 0) FROM cachedresponse WHERE run_id = {mark}"
        self._conn: Any = None
        self._lock = threading.Lock()  # the connection is shared with the writer thread
        self._pending: dict[str, tuple[Any, ...]] = {}
        self._committed: asyncio.Future[None] | None = None  # resolves when the pending rows are written
        self._writer: asyncio.Task[None] | None = None

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self.engine.raw_connection()
        return self._conn

    def get(self, key: str) -> CachedCall | None:
        row = self._pending.get(key)
        if row is not None:
            return CachedCall(*row[2:10])
        with self._lock:
            cursor = self._connection().cursor()
            try:
                cursor.execute(self._select_sql, (key,))
                found = cursor.fetchone()
            finally:
                cursor.close()
            self._conn.commit()  # end the read transaction so later writes by others are seen
        return CachedCall(*found) if found else None

    def paid_by(self, run_id: int) -> tuple[int, float]:
        """(calls, dollars) of the responses `run_id` paid for, as committed."""
        with self._lock:
            cursor = self._connection().cursor()
            try:
                cursor.execute(self._paid_sql, (run_id,))
                calls, dollars = cursor.fetchone()
            finally:
                cursor.close()
            self._conn.commit()
        return int(calls), float(dollars)

    def _row(self, key: str, model: str, call: CachedCall, run_id: int | None) -> tuple[Any, ...]:
        return (key, model, call.output, call.input_tokens, call.output_tokens, call.cost, call.latency_s,
                call.cached_tokens, call.cache_write_tokens, call.reasoning_tokens, utcnow(), run_id)

    def put(self, key: str, model: str, call: CachedCall, run_id: int | None = None) -> None:
        """Write a response now (blocking); in async code use `store`."""
        self._pending[key] = self._row(key, model, call, run_id)
        self.flush()

    async def store(self, key: str, model: str, call: CachedCall, run_id: int | None = None) -> None:
        """Write a response; returns once it is committed, together with whatever else arrived
        while the previous commit ran (one commit per batch, not per response). A failed write
        keeps the rows for the next one and is logged: the caller keeps its (paid) result."""
        self._pending[key] = self._row(key, model, call, run_id)
        if self._committed is None:
            self._committed = asyncio.get_running_loop().create_future()
        waiter = self._committed
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_pending())
        await asyncio.shield(waiter)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            done, self._committed = self._committed, None
            try:
                await asyncio.to_thread(self._write, list(batch.values()))
            except Exception as exc:  # noqa: BLE001  (database unreachable or locked: keep the rows, go on)
                for key, row in batch.items():
                    self._pending.setdefault(key, row)
                log.warning("response cache write failed (%s: %s); %d responses kept for the next write",
                            exc.__class__.__name__, exc, len(batch))
                if done is not None and not done.done():
                    done.set_result(None)
                return
            if done is not None and not done.done():
                done.set_result(None)

    def flush(self) -> None:
        """Write every pending response now (blocking)."""
        if self._pending:
            batch, self._pending = self._pending, {}
            try:
                self._write(list(batch.values()))
            except BaseException:
                for key, row in batch.items():
                    self._pending.setdefault(key, row)
                raise

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            conn = self._connection()
            cursor = conn.cursor()
            try:
                cursor.executemany(self._insert_sql, rows)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()

    async def aclose(self) -> None:
        if self._writer is not None and not self._writer.done():
            await asyncio.gather(self._writer, return_exceptions=True)
        self.flush()
        self.close()

    def close(self) -> None:
        self.flush()
        if self._conn is not None:
            with self._lock:
                self._conn.close()
            self._conn = None
