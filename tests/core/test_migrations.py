"""`alembic upgrade head` gives the same schema on SQLite and PostgreSQL, matching the tables."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.script import ScriptDirectory
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from trimloop.core import tables  # noqa: F401
from trimloop.core.db import alembic_config, make_engine, upgrade
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


def test_tokens_made_before_0007_keep_working_and_get_their_digest_on_first_use(db_url):
    """A PBKDF2 token of a 0006 database is checked once by PBKDF2 after the upgrade, then stored as
    its SHA-256 and found by it; a revoked one stays refused; a downgrade revokes digest-only tokens."""
    import hashlib
    from datetime import datetime, timezone

    import sqlalchemy as sa
    from alembic import command
    from sqlmodel.sql.sqltypes import UTCDateTime

    from trimloop.core import store
    from trimloop.core.db import alembic_config, session_scope
    from trimloop.core.tables import ApiToken

    upgrade(db_url, "0006")
    old = sa.table("apitoken", *(sa.column(c) for c in ("id", "name", "role", "prefix", "salt", "token_hash")),
                   sa.column("created_at", UTCDateTime()), sa.column("revoked_at", UTCDateTime()))
    now = datetime.now(timezone.utc)

    def legacy(n, prefix, secret, revoked=None):
        salt = f"{n:032x}"
        hashed = hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt), store.PBKDF2_ITERATIONS).hex()
        return {"name": f"old-{n}", "role": "viewer", "prefix": prefix, "salt": salt, "token_hash": hashed,
                "created_at": now, "revoked_at": revoked}

    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:  # two live tokens sharing a prefix, one revoked, one never used
            conn.execute(sa.insert(old), [legacy(1, "abcd1234", "first_secret"), legacy(2, "abcd1234", "second"),
                                          legacy(3, "feed0000", "gone", revoked=now), legacy(4, "cafe0000", "idle")])
            ids = dict(conn.execute(sa.select(old.c.name, old.c.id)).all())
        upgrade(db_url)
        first, second = "tlk_abcd1234_first_secret", "tlk_abcd1234_second"
        with session_scope(engine) as session:
            assert store.verify_token(session=session, token="tlk_abcd1234_wrong") is None
            assert store.verify_token(session=session, token="tlk_feed0000_gone") is None  # revoked stays refused
            assert store.verify_token(session=session, token=first).id == ids["old-1"]
        with session_scope(engine) as session:
            upgraded, untouched, revoked = (session.get(ApiToken, ids[f"old-{n}"]) for n in (1, 2, 3))
            assert upgraded.digest == hashlib.sha256(first.encode()).hexdigest()
            assert upgraded.salt is None and upgraded.token_hash is None  # the PBKDF2 hash is gone once used
            assert untouched.digest is None and untouched.token_hash and revoked.digest is None
            assert store.verify_token(session=session, token=first).id == ids["old-1"]  # now by its digest
            _, new = store.create_token(session=session, name="new", role="viewer", actor="test")
        with session_scope(engine) as session:
            assert store.verify_token(session=session, token=new).name == "new"
            assert store.verify_token(session=session, token=second).id == ids["old-2"]

        with session_scope(engine) as session:
            store.revoke_token(session=session, token_id=ids["old-1"], actor="test")
        with session_scope(engine) as session:
            assert store.verify_token(session=session, token=first) is None

        engine.dispose()
        command.downgrade(alembic_config(db_url), "0006")  # tokens with only a digest are revoked, not lost
        with engine.connect() as conn:
            rows = {r.name: r for r in conn.execute(sa.select(old))}
        assert set(rows) == {"old-1", "old-2", "old-3", "old-4", "new"}
        assert all(rows[n].revoked_at is not None and rows[n].token_hash == "" for n in ("new", "old-2"))
        assert rows["old-4"].revoked_at is None and rows["old-4"].token_hash == legacy(4, "", "idle")["token_hash"]
    finally:
        engine.dispose()


BEFORE_LABELS = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision("0008_labels").down_revision


def test_labels_move_to_their_table_and_back_with_the_data(db_url):
    """0008 carries each version's JSON labels into `promptlabel` (a label on two versions of a
    prompt stays with the newer, the one read as labelled before); a downgrade writes them back
    into the JSON lists; upgrading again gives the same rows."""
    from datetime import datetime, timedelta, timezone

    import sqlalchemy as sa
    from alembic import command
    from sqlmodel.sql.sqltypes import UTCDateTime

    from trimloop.core import store
    from trimloop.core.db import alembic_config, session_scope

    upgrade(db_url, BEFORE_LABELS)
    prompt = sa.table("prompt", *(sa.column(c) for c in ("id", "name", "connector")),
                      sa.column("config", sa.JSON()), sa.column("created_at", UTCDateTime()))
    version = sa.table("promptversion", *(sa.column(c) for c in ("id", "prompt_id", "sha", "model", "connector")),
                       *(sa.column(c, sa.JSON()) for c in ("template", "params", "labels")),
                       sa.column("created_at", UTCDateTime()))
    label = sa.table("promptlabel", *(sa.column(c) for c in ("prompt_id", "label", "version_id")))
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    labels = {  # version id → (prompt id, labels, made after t0)
        1: (1, ["production"], 1), 2: (1, ["staging"], 2), 3: (1, ["production", "canary"], 3), 4: (1, [], 4),
        5: (2, ["production"], 9), 6: (2, ["production"], 5),  # the newer by time, not by id, keeps it
        7: (3, [], 1)}
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(prompt), [{"id": p, "name": f"p{p}", "connector": "files", "config": {},
                                              "created_at": t0} for p in (1, 2, 3)])
            conn.execute(sa.insert(version), [
                {"id": vid, "prompt_id": pid, "sha": f"{vid:064d}", "template": {"kind": "text", "text": "{{x}}"},
                 "model": "m", "params": {}, "connector": "files", "labels": names,
                 "created_at": t0 + timedelta(hours=hours)} for vid, (pid, names, hours) in labels.items()])
            if engine.dialect.name == "postgresql":  # ids were given: move the sequences past them
                conn.execute(sa.text("SELECT setval('prompt_id_seq', 3)"))
                conn.execute(sa.text("SELECT setval('promptversion_id_seq', 7)"))
        upgrade(db_url)
        moved = [(1, "canary", 3), (1, "production", 3), (1, "staging", 2), (2, "production", 5)]
        with engine.connect() as conn:
            assert sorted(conn.execute(sa.select(label)).all()) == moved
            assert "labels" not in {c["name"] for c in sa.inspect(conn).get_columns("promptversion")}
        with session_scope(engine) as session:
            assert [store.production_version_id(session=session, prompt_id=p) for p in (1, 2, 3)] == [3, 5, None]
            assert store.version_labels(session=session, version_ids=range(1, 8)) == {
                1: [], 2: ["staging"], 3: ["canary", "production"], 4: [], 5: ["production"], 6: [], 7: []}
            store.move_label(session=session, prompt_id=1, label="production", version_id=4)  # after the upgrade

        engine.dispose()
        command.downgrade(alembic_config(db_url), BEFORE_LABELS)
        with engine.connect() as conn:
            back = dict(conn.execute(sa.select(version.c.id, version.c.labels)).all())
        assert back == {1: [], 2: ["staging"], 3: ["canary"], 4: ["production"], 5: ["production"], 6: [], 7: []}
        engine.dispose()
        upgrade(db_url)
        with engine.connect() as conn:
            assert sorted(conn.execute(sa.select(label)).all()) == [
                (1, "canary", 3), (1, "production", 4), (1, "staging", 2), (2, "production", 5)]
        assert schema(db_url)[1] == []
    finally:
        engine.dispose()


def test_an_old_sqlite_stops_migration_0008_with_what_to_do(sqlite_url, monkeypatch):
    import sqlite3

    upgrade(sqlite_url, BEFORE_LABELS)
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(ConfigError) as info:
        upgrade(sqlite_url)
    assert "needs SQLite 3.35 or newer" in info.value.message and "3.31.1" in info.value.message
    assert "PostgreSQL" in (info.value.hint or "")
    monkeypatch.undo()
    upgrade(sqlite_url)  # nothing was left half done
    assert schema(sqlite_url)[1] == []


def test_0019_gives_stored_records_their_key_and_keeps_them_unique_by_it(db_url):
    """Records stored before 0019 get the key sync computes (more than one fill batch of them); the
    unique key then refuses the same identity again; the partial index keeps its condition; a
    downgrade restores the unique (connector, external_id) constraint with the rows."""
    from datetime import datetime, timezone

    import sqlalchemy as sa
    from alembic import command
    from sqlalchemy.exc import IntegrityError
    from sqlmodel.sql.sqltypes import UTCDateTime

    from trimloop.core.tables import record_key

    before = "0018_unversioned_log_index"
    upgrade(db_url, before)
    log = sa.table("logrecord", *(sa.column(c) for c in ("connector", "external_id")),
                   *(sa.column(c, sa.JSON()) for c in ("inputs", "feedback", "meta")),
                   sa.column("batch", sa.Boolean()), sa.column("called_at", UTCDateTime()))
    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    rows = [{"connector": "otel" if i % 2 else "files", "external_id": f"{i:032x}:{i:016x}", "inputs": {},
             "feedback": [], "meta": {}, "batch": False, "called_at": at} for i in range(10_500)]
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(log), rows)
        upgrade(db_url)
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT connector, external_id, key FROM logrecord")).all()
            assert len(stored) == len(rows)
            assert all(key == record_key(connector, eid) for connector, eid, key in stored)
            indexes = {i["name"]: i for i in sa.inspect(conn).get_indexes("logrecord")}
            assert indexes["ux_logrecord_key"]["unique"] and indexes["ux_logrecord_key"]["column_names"] == ["key"]
            assert sa.inspect(conn).get_unique_constraints("logrecord") == []
            if engine.dialect.name == "sqlite":
                sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'ix_logrecord_unversioned'"))
                assert sql.scalar().endswith("WHERE version_id IS NULL")
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the same identity again
            conn.execute(sa.insert(log), [rows[7]])
        assert schema(db_url)[1] == []
        engine.dispose()
        command.downgrade(alembic_config(db_url), before)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM logrecord")).scalar() == len(rows)
            assert [tuple(u["column_names"]) for u in sa.inspect(conn).get_unique_constraints("logrecord")] == [
                ("connector", "external_id")]
        engine.dispose()
        upgrade(db_url)
        assert schema(db_url)[1] == []
    finally:
        engine.dispose()
