"""The content-addressed response cache, kept in the database: a rerun spends nothing.

Key = sha256 of (model, messages or text, params, seed). Measured on 2 cores, SQLAlchemy's
per-statement overhead and one commit per response were half the gateway's CPU per call, so
the cache talks to one raw DB-API connection: a hit is one primary-key SELECT, and new
responses are written behind in batches (one `executemany` per ≤ 50 ms or 256 responses).
A process killed with SIGKILL can lose at most that last window of responses; `flush()` (or
`aclose()`) writes everything that is pending.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from trimloop.core.identity import sha256_of
from trimloop.core.tables import utcnow

FLUSH_EVERY_S = 0.05
FLUSH_AT = 256


@dataclass(frozen=True)
class CachedCall:
    output: str
    input_tokens: int
    output_tokens: int
    cost: float
    latency_s: float


def cache_key(*, model: str, prompt: Any, params: dict[str, Any], seed: int | None) -> str:
    return sha256_of({"model": model, "prompt": prompt, "params": params, "seed": seed})


class ResponseCache:
    def __init__(self, engine: Engine):
        self.engine = engine
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._select_sql = (
            "SELECT output, input_tokens, output_tokens, cost, latency_s FROM cachedresponse "
            f"WHERE key = {mark}"
        )
        self._insert_sql = (
            "INSERT INTO cachedresponse (key, model, output, input_tokens, output_tokens, cost, "
            f"latency_s, created_at) VALUES ({', '.join([mark] * 8)}) ON CONFLICT (key) DO NOTHING"
        )
        self._conn: Any = None
        self._lock = threading.Lock()  # the connection is shared with the flush thread
        self._pending: dict[str, tuple[Any, ...]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self.engine.raw_connection()
        return self._conn

    def get(self, key: str) -> CachedCall | None:
        row = self._pending.get(key)
        if row is not None:
            return CachedCall(row[2], row[3], row[4], row[5], row[6])
        with self._lock:
            cursor = self._connection().cursor()
            try:
                cursor.execute(self._select_sql, (key,))
                found = cursor.fetchone()
            finally:
                cursor.close()
            self._conn.commit()  # end the read transaction so later writes by others are seen
        return CachedCall(*found) if found else None

    def put(self, key: str, model: str, call: CachedCall) -> None:
        """Queue a response; written within FLUSH_EVERY_S (or at once outside an event loop)."""
        self._pending[key] = (
            key, model, call.output, call.input_tokens, call.output_tokens, call.cost,
            call.latency_s, utcnow(),
        )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if len(self._pending) >= FLUSH_AT:
            self.flush()
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_EVERY_S)
        if self._pending:
            batch, self._pending = self._pending, {}
            try:
                await asyncio.to_thread(self._write, list(batch.values()))
            except BaseException:
                self._pending.update(batch)  # keep them for the next flush
                raise

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, {}
            try:
                self._write(list(batch.values()))
            except BaseException:
                self._pending.update(batch)
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
        if self._flusher is not None and not self._flusher.done():
            await self._flusher
        self.flush()
        self.close()

    def close(self) -> None:
        self.flush()
        if self._conn is not None:
            with self._lock:
                self._conn.close()
            self._conn = None
