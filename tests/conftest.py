"""Shared fixtures: an isolated trimloop home per test, fresh databases, services and local models.

Tests that need a service (PostgreSQL, the bundled models, MLflow …) skip with a clear reason
where it is absent. With TRIMLOOP_REQUIRE_SERVICES=1 (set by .ci/run) such skips are failures,
so CI never passes by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE_SERVICES = os.environ.get("TRIMLOOP_REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get("TRIMLOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SERVICES and report.skipped and call.excinfo is not None:
        reason = str(call.excinfo.value)
        report.outcome = "failed"
        report.longrepr = f"skipped, but TRIMLOOP_REQUIRE_SERVICES=1 forbids skips: {reason}"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own trimloop home and config path, and no stray TRIMLOOP_* settings."""
    for key in list(os.environ):
        if key.startswith("TRIMLOOP_") and key not in ("TRIMLOOP_REQUIRE_SERVICES", "TRIMLOOP_TEST_PG"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("TRIMLOOP_HOME", str(home))
    monkeypatch.setenv("TRIMLOOP_CONFIG", str(tmp_path / "trimloop.toml"))
    from trimloop.core.settings import get_settings

    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"trimloop_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # server absent on a laptop
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 ({exc.__class__.__name__}); "
                    "start it or set TRIMLOOP_TEST_PG")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        from trimloop.core.db import _engine_for

        _engine_for.cache_clear()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def engine(sqlite_url: str):  # type: ignore[no-untyped-def]
    """A migrated SQLite database for one test."""
    from trimloop.core.db import make_engine, upgrade

    upgrade(sqlite_url)
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


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
