"""Shared fixtures: an isolated trimloop home per test, fresh databases, services and local models.

Databases: the suite runs on SQLite (default) and on PostgreSQL, chosen by one switch,
`TRIMLOOP_TEST_DB=sqlite|postgresql` (scripts/test.sh runs both passes). Tests ask for a database
through these fixtures, which follow the switch:

- `db_url`: a fresh, empty database (migrate it yourself); `make_db_url()` makes more of them;
- `engine`: a fresh database at the newest schema;
- `home_db`: the database the CLI and `load_settings()` open (SQLite in TRIMLOOP_HOME, or a fresh
  PostgreSQL database through TRIMLOOP_DATABASE_URL);
- `test_databases`: the session-wide factory behind them, for module-scoped fixtures.

A test marked `postgresql_only` (several processes writing one database at once) also carries
`db` and is deselected on SQLite, named in the summary. A test that uses any of them carries the `db` marker, which is how the PostgreSQL pass selects its
tests (`-m db`): tests that touch no database run once. `sqlite_url` and `pg_url` stay for the few
tests about one backend (schema comparison, the PostgreSQL driver's URL forms). A guard fails any
test that leaves a SQLite database in its tmp folder without asking for one of these fixtures (it
would never run on PostgreSQL), or that makes one during the PostgreSQL pass.

Tests that need a service (PostgreSQL, the bundled models, MLflow …) skip with a clear reason
where it is absent. With TRIMLOOP_REQUIRE_SERVICES=1 (set by .ci/run) such skips are failures,
so CI never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE_SERVICES = os.environ.get("TRIMLOOP_REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get("TRIMLOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")
BACKEND = os.environ.get("TRIMLOOP_TEST_DB", "sqlite").strip().lower() or "sqlite"
KEPT_ENV = ("TRIMLOOP_REQUIRE_SERVICES", "TRIMLOOP_TEST_PG", "TRIMLOOP_TEST_DB")
# Fixtures that follow TRIMLOOP_TEST_DB; a test using any of them (directly or through another
# fixture) is marked `db` and runs in both passes.
DB_FIXTURES = frozenset({"test_databases", "make_db_url", "db_url", "engine", "home_db"})
SQLITE_MAGIC = b"SQLite format 3\x00"


def pytest_configure(config: pytest.Config) -> None:
    if BACKEND not in BACKENDS:
        raise pytest.UsageError(f"TRIMLOOP_TEST_DB={BACKEND!r}: use one of {', '.join(BACKENDS)}")
    config.addinivalue_line("markers", "db: uses a database fixture that follows TRIMLOOP_TEST_DB "
                                       "(set automatically; the PostgreSQL pass runs `-m db`)")
    config.addinivalue_line("markers", "postgresql_only: needs PostgreSQL as the test database (several "
                                       "processes writing at once); implies `db`, skipped on the SQLite pass")
    config.addinivalue_line("markers", "sqlite_only: runs once, in the SQLite pass, though it uses a database "
                                       "fixture: a bundled-model test whose store work the fake-gateway tests "
                                       "cover on PostgreSQL (it is slow: minutes of llama.cpp per pass)")


def pytest_report_header(config: pytest.Config) -> str:
    where = f" ({PG_ADMIN_URL.rsplit('@', 1)[-1].rsplit('/', 1)[0]})" if BACKEND == "postgresql" else ""
    return f"trimloop test database: {BACKEND}{where} (TRIMLOOP_TEST_DB)"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("sqlite_only"):  # not `db`: the PostgreSQL pass (`-m db`) leaves it out
            continue
        if DB_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("postgresql_only"):
            item.add_marker(pytest.mark.db)
    if BACKEND != "postgresql":  # deselected, not skipped: TRIMLOOP_REQUIRE_SERVICES=1 fails every skip
        only_pg = [item for item in items if item.get_closest_marker("postgresql_only")]
        if only_pg:
            items[:] = [item for item in items if not item.get_closest_marker("postgresql_only")]
            config.hook.pytest_deselected(items=only_pg)
            _DESELECTED_PG.extend(item.nodeid for item in only_pg)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SERVICES and report.skipped and call.excinfo is not None:
        reason = str(call.excinfo.value)
        report.outcome = "failed"
        report.longrepr = f"skipped, but TRIMLOOP_REQUIRE_SERVICES=1 forbids skips: {reason}"


def _sqlite_files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*.db"):
        try:
            with path.open("rb") as handle:
                if handle.read(16) == SQLITE_MAGIC:
                    found.append(path)
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   request: pytest.FixtureRequest) -> Iterator[Path]:
    """Every test gets its own trimloop home and config path, and no stray TRIMLOOP_* settings.
    Afterwards, the database guard (see the module docstring)."""
    for key in list(os.environ):
        if key.startswith("TRIMLOOP_") and key not in KEPT_ENV:
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("TRIMLOOP_HOME", str(home))
    monkeypatch.setenv("TRIMLOOP_CONFIG", str(tmp_path / "trimloop.toml"))
    from trimloop.core.settings import get_settings

    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
    names = set(request.fixturenames)
    if "sqlite_url" in names:  # a test about SQLite itself
        return
    made = _sqlite_files(tmp_path)
    if not made:
        return
    shown = ", ".join(str(p.relative_to(tmp_path)) for p in made)
    if not names & DB_FIXTURES:
        pytest.fail(f"this test made a SQLite database ({shown}) without asking for a database fixture, so "
                    "the PostgreSQL pass would not run it: use `engine`, `db_url`, `make_db_url` or, for the "
                    "CLI's default database, `home_db` (tests/conftest.py)", pytrace=False)
    if BACKEND == "postgresql":
        pytest.fail(f"this test made a SQLite database ({shown}) during the PostgreSQL pass: build database "
                    "URLs with `db_url`/`make_db_url` (or `home_db` for the CLI's default) instead of "
                    "sqlite:/// paths", pytrace=False)


class TestDatabases:
    """Fresh databases of one backend. PostgreSQL: `CREATE DATABASE` per database (migrated ones are
    cloned from a template migrated once per session), `DROP DATABASE … WITH (FORCE)` afterwards.
    SQLite: a file in the folder the caller gives (migrated ones copied from a migrated template)."""

    __test__ = False  # not a test class

    def __init__(self, backend: str, workdir: Path):
        self.backend = backend
        self.workdir = workdir
        self._lock = threading.Lock()
        self._admin: Any = None
        self._template: str | None = None
        self._unavailable: str | None = None
        self._made: list[str] = []
        self.leaks: list[tuple[str, int]] = []  # (test, sessions still open on its database at the end)

    # -- public ---------------------------------------------------------------------------------
    def new(self, sqlite_path: Path, *, migrated: bool = False) -> str:
        """The URL of a fresh database (at the newest schema with `migrated`)."""
        if self.backend == "sqlite":
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            if sqlite_path.exists():
                raise FileExistsError(f"{sqlite_path} exists: pick another name for this database")
            if migrated:
                shutil.copyfile(self._sqlite_template(), sqlite_path)
            return f"sqlite:///{sqlite_path}"
        name = f"trimloop_test_{uuid.uuid4().hex[:12]}"
        template = f' TEMPLATE "{self._pg_template()}"' if migrated else ""
        self._pg_execute(f'CREATE DATABASE "{name}"{template}')
        self._made.append(name)
        return self._pg_url(name)

    def drop(self, url: str, who: str = "") -> None:
        """Forget a database made by `new`: dispose the app's cached engine for it, drop it (PostgreSQL).
        Sessions still open on it by then were leaked (by the test or the code under test): they are
        noted for the end-of-run summary, and `WITH (FORCE)` closes them so the drop goes through."""
        from trimloop.core.db import dispose_engines

        dispose_engines()  # the app's cached engines, this database's among them: their connections close now
        if self.backend == "postgresql":
            name = url.rsplit("/", 1)[-1]
            still_open = self._pg_sessions(name)
            if still_open:
                self.leaks.append((who or name, still_open))
            self._pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if name in self._made:
                self._made.remove(name)

    def close(self) -> None:
        if self.backend == "postgresql" and self._admin is not None:
            for name in [*self._made, *([self._template] if self._template else [])]:
                self._pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._admin.dispose()

    # -- PostgreSQL -----------------------------------------------------------------------------
    def _pg_url(self, name: str) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def _pg_admin(self) -> Any:
        if self._unavailable:
            pytest.skip(self._unavailable)
        if self._admin is None:
            import sqlalchemy

            self._admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            try:
                with self._admin.connect():
                    pass
            except Exception as exc:  # the server is absent (a laptop)
                self._admin.dispose()
                self._admin = None
                self._unavailable = (f"PostgreSQL not reachable at {PG_ADMIN_URL.rsplit('@', 1)[-1]} "
                                     f"({exc.__class__.__name__}); start it or set TRIMLOOP_TEST_PG")
                pytest.skip(self._unavailable)
        return self._admin

    def _pg_execute(self, sql: str) -> None:
        with self._pg_admin().connect() as conn:
            conn.exec_driver_sql(sql)

    def _pg_sessions(self, name: str, settle_s: float = 2.0) -> int:
        """Sessions on database `name`, waiting up to `settle_s` for those of exited processes to end."""
        import time

        deadline = time.monotonic() + settle_s
        while True:
            with self._pg_admin().connect() as conn:
                count = conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = %(name)s",
                                             {"name": name}).scalar_one()
            if not count or time.monotonic() > deadline:
                return int(count)
            time.sleep(0.1)

    def _pg_template(self) -> str:
        with self._lock:
            if self._template is None:
                from trimloop.core.db import upgrade

                name = f"trimloop_test_template_{uuid.uuid4().hex[:8]}"
                self._pg_execute(f'CREATE DATABASE "{name}"')
                upgrade(self._pg_url(name))  # its engine is disposed: a template must have no sessions
                self._template = name
            return self._template

    # -- SQLite ---------------------------------------------------------------------------------
    def _sqlite_template(self) -> Path:
        with self._lock:
            path = self.workdir / "template.db"
            if not path.exists():
                from trimloop.core.db import upgrade

                building = self.workdir / "template-building.db"
                upgrade(f"sqlite:///{building}")
                with sqlite3.connect(building) as conn:  # one self-contained file to copy
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    conn.execute("PRAGMA journal_mode=DELETE")
                conn.close()
                building.rename(path)
            return path


_LEAKS: list[tuple[str, int]] = []
_DESELECTED_PG: list[str] = []  # postgresql_only tests left out of a SQLite pass (named in the summary)


@pytest.fixture(scope="session")
def test_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabases]:
    """The session's database factory for the backend TRIMLOOP_TEST_DB selects."""
    databases = TestDatabases(BACKEND, tmp_path_factory.mktemp("databases"))
    databases.leaks = _LEAKS
    yield databases
    databases.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _DESELECTED_PG:
        terminalreporter.section("postgresql_only tests deselected on SQLite")
        terminalreporter.line(f"{len(_DESELECTED_PG)} test(s) need several processes writing one database at "
                              "once: they run in the PostgreSQL pass (TRIMLOOP_TEST_DB=postgresql, -m db), "
                              f"e.g. {_DESELECTED_PG[0]}")
    if _LEAKS:
        terminalreporter.section("database sessions left open (closed by DROP DATABASE … WITH (FORCE))")
        for who, count in _LEAKS:
            terminalreporter.line(f"{who}: {count}")


@pytest.fixture
def make_db_url(test_databases: TestDatabases, tmp_path: Path,
                request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """`make_db_url(migrated=False)`: the URL of another fresh database, dropped after the test."""
    made: list[str] = []

    def make(*, migrated: bool = False) -> str:
        url = test_databases.new(tmp_path / f"test-{len(made)}.db", migrated=migrated)
        made.append(url)
        return url

    yield make
    for url in made:
        test_databases.drop(url, request.node.nodeid)


@pytest.fixture
def db_url(make_db_url: Callable[..., str]) -> str:
    """A fresh, empty database of the selected backend."""
    return make_db_url()


@pytest.fixture
def engine(make_db_url: Callable[..., str]):  # type: ignore[no-untyped-def]
    """A fresh database at the newest schema, of the selected backend."""
    from trimloop.core.db import make_engine

    eng = make_engine(make_db_url(migrated=True))
    yield eng
    eng.dispose()


@pytest.fixture
def home_db(_isolated_home: Path, test_databases: TestDatabases, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> Iterator[str]:
    """The database the CLI and `load_settings()` open, empty: SQLite in TRIMLOOP_HOME (the default),
    or a fresh PostgreSQL database named by TRIMLOOP_DATABASE_URL (inherited by subprocesses)."""
    from trimloop.core.settings import get_settings

    if test_databases.backend == "sqlite":
        yield f"sqlite:///{_isolated_home / 'trimloop.db'}"
        return
    url = test_databases.new(_isolated_home / "trimloop.db")
    monkeypatch.setenv("TRIMLOOP_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        yield url
    finally:
        test_databases.drop(url, f"{request.node.nodeid} (home_db)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite URL whatever the backend switch says: for tests about SQLite itself."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database whatever the backend switch says (for tests about PostgreSQL itself)."""
    databases = TestDatabases("postgresql", Path("."))
    databases.leaks = _LEAKS
    url = databases.new(Path("unused.db"))
    try:
        yield url
    finally:
        databases.drop(url, f"{request.node.nodeid} (pg_url)")
        databases.close()


def _two_free_ports() -> int:
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="session")
def local_models(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Settings pointing at running llama.cpp servers for both bundled models (started once).

    Pass these settings explicitly (`Gateway(local_models, …)`): per-test env isolation does not
    reach a session fixture.
    """
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: pip install -e '.[dev]'")
    from trimloop.core.local_models import ensure_running
    from trimloop.core.settings import LocalModelSettings, Settings

    home = tmp_path_factory.mktemp("local-models-home")
    settings = Settings(home=home, local_models=LocalModelSettings(port=_two_free_ports(), n_threads=2))
    with ensure_running(settings, ["local/smollm2-135m", "local/gemma3-270m"]):
        yield settings
