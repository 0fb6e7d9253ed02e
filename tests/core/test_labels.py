"""Labels: one row per prompt and label, moved only by `store.move_label`, read by the one
production-version query (`store.production_version_id`) that datasets, due and deploys share."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.errors import NotFound
from trimloop.core.settings import Settings
from trimloop.core.tables import Prompt, PromptLabel, PromptVersion
from trimloop.evals.datasets import production_version
from trimloop.optimizer.due import prompt_facts


def _prompt(engine: Engine, name: str, versions: int) -> tuple[int, list[int]]:
    with session_scope(engine) as session:
        prompt = Prompt(name=name, connector="test")
        session.add(prompt)
        session.flush()
        rows = [PromptVersion(prompt_id=prompt.id, sha=f"{name}{i}".ljust(64, "0"),  # type: ignore[arg-type]
                              template={"kind": "text", "text": f"v{i} {{{{x}}}}"}, model="m", connector="test")
                for i in range(versions)]
        session.add_all(rows)
        session.flush()
        return prompt.id, [v.id for v in rows]  # type: ignore[return-value,misc]


def _rows(engine: Engine) -> list[tuple[int, str, int]]:
    with session_scope(engine) as session:
        return [(r.prompt_id, r.label, r.version_id) for r in
                session.exec(select(PromptLabel).order_by(col(PromptLabel.prompt_id), col(PromptLabel.label))).all()]


def test_a_label_moves_between_versions_and_sits_on_one_at_a_time(engine: Engine) -> None:
    pid, (v1, v2, v3) = _prompt(engine, "triage", 3)
    other, (w1,) = _prompt(engine, "other", 1)
    with session_scope(engine) as session:
        assert store.production_version_id(session=session, prompt_id=pid) is None
        assert store.move_label(session=session, prompt_id=pid, label="production", version_id=v1) is None
        assert store.move_label(session=session, prompt_id=pid, label="staging", version_id=v2) is None
        assert store.move_label(session=session, prompt_id=other, label="production", version_id=w1) is None
    with session_scope(engine) as session:
        assert store.production_version_id(session=session, prompt_id=pid) == v1
        assert store.production_version_id(session=session, prompt_id=pid, label="staging") == v2
        assert store.move_label(session=session, prompt_id=pid, label="production", version_id=v2) == v1
        assert store.move_label(session=session, prompt_id=pid, label="production", version_id=v2) == v2  # no-op
    assert _rows(engine) == [(pid, "production", v2), (pid, "staging", v2), (other, "production", w1)]
    with session_scope(engine) as session:
        assert store.version_labels(session=session, version_ids=[v1, v2, v3, w1]) == {
            v1: [], v2: ["production", "staging"], v3: [], w1: ["production"]}
        assert store.prompt_labels(session=session, prompt_id=pid) == {"production": v2, "staging": v2}
        assert store.move_label(session=session, prompt_id=pid, label="staging", version_id=None) == v2
        assert store.move_label(session=session, prompt_id=pid, label="staging", version_id=None) is None
    assert _rows(engine) == [(pid, "production", v2), (other, "production", w1)]


def test_every_reader_of_the_production_version_asks_the_one_query(engine: Engine, tmp_path) -> None:
    """Datasets and the due check agree with `production_version_id` as the label moves."""
    pid, (v1, v2) = _prompt(engine, "triage", 2)
    settings = Settings(home=tmp_path / "home")
    with session_scope(engine) as session:
        prompt = session.get(Prompt, pid)
        with pytest.raises(NotFound) as info:
            production_version(session, pid)
        assert "no version labelled 'production'" in info.value.message
        assert not prompt_facts(session, settings, prompt).has_production
        store.move_label(session=session, prompt_id=pid, label="production", version_id=v1)
        assert production_version(session, pid).id == v1 and prompt_facts(session, settings, prompt).has_production
        store.move_label(session=session, prompt_id=pid, label="production", version_id=v2)
        assert production_version(session, pid).id == v2
        store.move_label(session=session, prompt_id=pid, label="staging", version_id=v1)
        assert production_version(session, pid, label="staging").id == v1
        store.move_label(session=session, prompt_id=pid, label="production", version_id=None)
        assert not prompt_facts(session, settings, prompt).has_production


def test_a_move_through_a_connection_is_what_sync_writes(engine: Engine) -> None:
    pid, (v1, v2) = _prompt(engine, "triage", 2)
    with engine.begin() as conn:
        store.move_label(session=conn, prompt_id=pid, label="production", version_id=v1)
        assert store.move_label(session=conn, prompt_id=pid, label="production", version_id=v2) == v1
        assert store.production_version_id(session=conn, prompt_id=pid) == v2
    assert _rows(engine) == [(pid, "production", v2)]


@pytest.mark.postgres
def test_two_moves_of_one_new_label_at_once_both_succeed(pg_url: str) -> None:
    """A sync and a promote (or two syncs) may move the same label at the same moment. The second
    read the label as absent before the first committed its insert; its upsert waits for the first
    and then wins, where a read-then-insert would fail on the unique constraint."""
    import threading
    import time

    from sqlalchemy import text

    from trimloop.core.db import make_engine, upgrade

    upgrade(pg_url)
    engine = make_engine(pg_url)
    try:
        pid, (v1, v2) = _prompt(engine, "triage", 2)
        done: dict[str, object] = {}
        with engine.connect() as first, engine.connect() as watcher:
            held = first.begin()
            store.move_label(session=first, prompt_id=pid, label="production", version_id=v1)  # not committed

            def second() -> None:
                try:
                    with engine.begin() as conn:
                        done["before"] = store.move_label(session=conn, prompt_id=pid, label="production",
                                                          version_id=v2)
                except Exception as exc:  # the assertion below shows it
                    done["error"] = exc

            thread = threading.Thread(target=second)
            thread.start()
            blocked = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'")
            deadline = time.monotonic() + 60
            while not watcher.execute(blocked).scalar():  # the second now waits on the first's row
                watcher.rollback()  # pg_stat_activity is a snapshot per transaction
                assert thread.is_alive() and time.monotonic() < deadline, done
                time.sleep(0.01)
            held.commit()
            thread.join(60)
        assert done == {"before": None}
        with engine.connect() as conn:
            assert store.production_version_id(session=conn, prompt_id=pid) == v2
    finally:
        engine.dispose()
