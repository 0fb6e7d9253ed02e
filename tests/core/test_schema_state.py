"""schema_state: where a database's schema stands against the shipped migrations, read-only."""

from __future__ import annotations

from sqlalchemy import text

from trimloop.core.db import make_engine, schema_state, upgrade


def test_empty_behind_at_head_and_newer_than_this_code(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        empty = schema_state(engine)
        assert empty.current == () and empty.behind == len(list(_revisions())) and empty.head
        upgrade(db_url, "0005")
        behind = schema_state(engine)
        assert behind.current == ("0005",) and behind.behind == len(list(_revisions())) - 5
        assert schema_state(engine).current == ("0005",)  # reading migrated nothing
        upgrade(db_url)
        assert schema_state(engine).behind == 0 and schema_state(engine).current == schema_state(engine).head
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        newer = schema_state(engine)
        assert newer.unknown == ("9999_from_the_future",) and newer.behind == 0
    finally:
        engine.dispose()


def _revisions():  # type: ignore[no-untyped-def]
    from alembic.script import ScriptDirectory

    from trimloop.core.db import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()
