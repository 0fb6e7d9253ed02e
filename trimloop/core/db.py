"""Database engine (SQLite file by default, PostgreSQL by URL) and Alembic migrations."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from trimloop.core import traffic  # noqa: F401  (LogRecords added through a Session update the aggregates)
from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings, get_settings

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x7472696D6C6F6F70  # b"trimloop": the advisory lock `upgrade` holds on PostgreSQL
# Connections per engine: 2 for each of the API's request turns (its session and the token's
# last-use write; `api.concurrent_requests` ≤ 16) plus 8 for the scheduler, runs and the UI's own
# sessions. A checkout waits at most POOL_TIMEOUT_S, then the API answers 503 database_busy.
POOL_SIZE, POOL_OVERFLOW, POOL_TIMEOUT_S = 20, 20, 10


def make_engine(url: str) -> Engine:
    """An engine with SQLite tuned for one writer and many readers (WAL, busy timeout); a missing
    folder for the SQLite file is created private (0700), the file itself by `upgrade`."""
    pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, "pool_timeout": POOL_TIMEOUT_S}
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)
        else:
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def private_file(path: Path) -> None:
    """Create `path` (empty) readable by its owner only, and its missing folder 0700; an existing
    file or folder keeps its mode (the user chose it). SQLite gives its -wal and -shm files the
    database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(settings: Settings | None = None) -> Engine:
    """The process's engine for the configured database, made once per URL."""
    url = (settings or get_settings()).db_url
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Close the pooled connections of every engine `get_engine` made, and forget them. An engine
    dropped without this leaves its connections to the garbage collector (psycopg warns then)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.dispose()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (default: the newest schema); a SQLite file it
    creates is readable by its owner only (0600, folder 0700). Safe to call from
    several processes at once (workers and a server starting together): they migrate one at a time,
    and the later ones find the schema already there."""
    try:
        with _migration_lock(url):
            command.upgrade(alembic_config(url), revision)
    except Exception as exc:  # connection refused, permissions, bad URL
        if exc.__class__.__module__.startswith(("sqlalchemy", "psycopg", "sqlite3")):
            raise ConfigError(
                f"cannot migrate the database: {exc.__class__.__name__}: {str(exc).splitlines()[0]}",
                where=_safe_url(url),
                hint="check TRIMLOOP_DATABASE_URL and that the server is running and reachable",
            ) from None
        raise


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema stands against the migrations this code ships."""

    current: tuple[str, ...]  # the revisions it is at; empty: no schema yet
    head: tuple[str, ...]  # the newest revisions shipped
    behind: int  # migrations `upgrade` would apply
    unknown: tuple[str, ...]  # revisions it is at that this code does not know (a newer trimloop made them)


def schema_state(engine: Engine) -> SchemaState:
    """Read the database's Alembic revision without changing anything (SQLAlchemy errors pass through)."""
    script = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as conn:
        current = tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = tuple(r for r in current if r not in known)
    behind = 0 if unknown else sum(1 for _ in script.iterate_revisions("heads", current or "base"))
    return SchemaState(current=current, head=tuple(sorted(script.get_heads())), behind=behind, unknown=unknown)


def safe_url(url: str) -> str:
    """The database URL with its password hidden, for messages."""
    return _safe_url(url)


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """Hold, across processes, the lock that serializes migrations of the database at `url`: a
    session-level advisory lock on PostgreSQL; on SQLite an exclusive lock on a file beside the
    database (not the database file itself: closing another descriptor of it would drop SQLite's
    own locks)."""
    if url.startswith("postgresql"):
        engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:  # the lock goes with this session, also if we die
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        finally:
            engine.dispose()
        return
    database = make_url(url).database if url.startswith("sqlite") else None
    try:
        import fcntl
    except ImportError:  # Windows: no flock; processes there start one at a time
        fcntl = None  # type: ignore[assignment]
    if fcntl is None or not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    private_file(Path(database))
    lock_path = Path(f"{database}-migrate.lock")
    with os.fdopen(os.open(lock_path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _safe_url(url: str) -> str:
    """The URL with any password replaced, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"
