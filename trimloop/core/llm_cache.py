"""The content-addressed response cache, kept in the database: a rerun spends nothing.

Key = sha256 of (model, messages or text, params, seed). Reads and writes use SQLAlchemy Core
on short connections: a hit costs one primary-key lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from trimloop.core.identity import sha256_of
from trimloop.core.tables import CachedResponse, utcnow

_TABLE = CachedResponse.__table__  # type: ignore[attr-defined]


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
        self._select = select(
            _TABLE.c.output,
            _TABLE.c.input_tokens,
            _TABLE.c.output_tokens,
            _TABLE.c.cost,
            _TABLE.c.latency_s,
        )
        dialect = engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._insert = insert(_TABLE).on_conflict_do_nothing(index_elements=["key"])

    def get(self, key: str) -> CachedCall | None:
        with self.engine.connect() as conn:
            row = conn.execute(self._select.where(_TABLE.c.key == key)).first()
        return CachedCall(*row) if row else None

    def put(self, key: str, model: str, call: CachedCall) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                self._insert,
                {
                    "key": key,
                    "model": model,
                    "output": call.output,
                    "input_tokens": call.input_tokens,
                    "output_tokens": call.output_tokens,
                    "cost": call.cost,
                    "latency_s": call.latency_s,
                    "created_at": utcnow(),
                },
            )
