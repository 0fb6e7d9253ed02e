"""`alembic upgrade head` gives the same schema on SQLite and PostgreSQL, matching the tables."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from trimloop.core import tables  # noqa: F401
from trimloop.core.db import make_engine, upgrade
from trimloop.core.errors import ConfigError


def schema(url):
    engine = make_engine(url)
    try:
        insp = inspect(engine)
        shape = {}
        for table in sorted(insp.get_table_names()):
            if table == "alembic_version":
                continue
            shape[table] = {
                "columns": sorted((c["name"], c["nullable"]) for c in insp.get_columns(table)),
                "pk": sorted(insp.get_pk_constraint(table)["constrained_columns"]),
                "indexes": sorted((tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table) if not i.get("duplicates_constraint")),
                "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
                "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"]) for f in insp.get_foreign_keys(table)),
            }
        with engine.connect() as conn:
            drift = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        return shape, drift
    finally:
        engine.dispose()


def test_sqlite_schema_matches_the_tables(sqlite_url):
    upgrade(sqlite_url)
    shape, drift = schema(sqlite_url)
    assert drift == []
    assert {"prompt", "promptversion", "logrecord", "suggestion", "cachedresponse", "apitoken"} <= set(shape)


@pytest.mark.postgres
def test_postgres_and_sqlite_schemas_are_the_same(sqlite_url, pg_url):
    upgrade(sqlite_url)
    upgrade(pg_url)
    lite, lite_drift = schema(sqlite_url)
    pg, pg_drift = schema(pg_url)
    assert lite_drift == [] and pg_drift == []
    assert lite == pg


def test_upgrade_is_idempotent(sqlite_url):
    upgrade(sqlite_url)
    upgrade(sqlite_url)
    assert schema(sqlite_url)[1] == []


def test_unreachable_database_is_a_config_error_without_password():
    with pytest.raises(ConfigError) as info:
        upgrade("postgresql+psycopg://user:s3cret@127.0.0.1:1/nope")
    assert "s3cret" not in str(info.value) and "TRIMLOOP_DATABASE_URL" in (info.value.hint or "")


def test_processes_starting_together_on_a_fresh_database_all_migrate_it(db_url, make_db_url):
    """Two workers (or a worker and the server) started at once each run `upgrade` on startup; on a
    fresh database every one of them must succeed, and the schema is built once."""
    import subprocess
    import sys
    import time

    go = time.time() + 3  # the processes start together, once their imports are done
    code = ("import sys, time; from trimloop.core.db import upgrade; "
            "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); upgrade(sys.argv[1])")
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url, str(go)], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], "\n".join(errors)
    alone = make_db_url()
    upgrade(alone)
    assert schema(db_url)[0] == schema(alone)[0]
