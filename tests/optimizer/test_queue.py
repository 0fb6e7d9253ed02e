"""One run per prompt at a time: atomic claims (on both backends), stale reclaim, crash resume."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from trimloop.core.db import session_scope
from trimloop.core.gateway import cache_key
from trimloop.core.tables import OptimizationRun, Prompt, RunEvent, Suggestion, utcnow
from trimloop.optimizer.queue import claim_next, claim_run, enqueue, execute_claimed, heartbeat
from trimloop.testing.fake_provider import FakeProvider
from trimloop.testing.sentiment import classify, prompt_text

STALE = timedelta(minutes=10)


@pytest.fixture
def any_engine(engine):  # type: ignore[no-untyped-def]
    """SQLite, or PostgreSQL in the suite's PostgreSQL pass (TRIMLOOP_TEST_DB)."""
    return engine


def _prompt(engine, name="p") -> int:
    with session_scope(engine) as session:
        prompt = Prompt(name=name, connector="files")
        session.add(prompt)
        session.flush()
        return prompt.id


def _queued(engine, prompt_id, n=1) -> list[int]:
    """Queued runs inserted directly, as two racing schedulers could leave them."""
    with session_scope(engine) as session:
        runs = [OptimizationRun(prompt_id=prompt_id) for _ in range(n)]
        session.add_all(runs)
        session.flush()
        return [r.id for r in runs]


def _status(engine, run_id):
    with session_scope(engine) as session:
        run = session.get(OptimizationRun, run_id)
        return run.status, run.worker


def test_enqueue_refuses_a_second_run_of_the_same_prompt(any_engine):
    pid = _prompt(any_engine)
    first = enqueue(any_engine, prompt_id=pid, reason="test")
    assert first is not None and enqueue(any_engine, prompt_id=pid) is None
    other = _prompt(any_engine, "q")
    assert enqueue(any_engine, prompt_id=other) not in (None, first)


def test_racing_schedulers_queue_one_run_per_prompt(any_engine):
    pid = _prompt(any_engine)
    barrier, queued = threading.Barrier(6), []

    def work() -> None:
        barrier.wait()
        queued.append(enqueue(any_engine, prompt_id=pid))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([q for q in queued if q is not None]) == 1, queued
    with session_scope(any_engine) as session:
        assert len(session.exec(select(OptimizationRun)).all()) == 1


def test_racing_workers_claim_one_run_per_prompt(any_engine):
    pid = _prompt(any_engine)
    runs = _queued(any_engine, pid, n=3)
    barrier, won = threading.Barrier(6), []

    def work(i: int) -> None:
        barrier.wait()
        got = claim_next(any_engine, worker=f"w{i}", queued_older_than=timedelta(0))
        if got is not None:
            won.append((f"w{i}", got))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1, won
    (worker, run_id), = won
    assert _status(any_engine, run_id) == ("running", worker)
    assert [_status(any_engine, r)[0] for r in runs if r != run_id] == ["queued", "queued"]


def test_a_fresh_heartbeat_blocks_claims_and_a_stale_one_is_reclaimed(any_engine):
    pid = _prompt(any_engine)
    first, second = _queued(any_engine, pid, n=2)
    t0 = utcnow()
    assert claim_run(any_engine, run_id=first, worker="a", now=t0)
    assert not claim_run(any_engine, run_id=first, worker="b", now=t0 + timedelta(minutes=5))
    assert not claim_run(any_engine, run_id=second, worker="b", now=t0 + timedelta(minutes=5))
    assert heartbeat(any_engine, run_id=first, worker="a", now=t0 + timedelta(minutes=8))
    assert not claim_run(any_engine, run_id=first, worker="b", now=t0 + timedelta(minutes=17))
    # worker a goes silent: after `stale_after` its run is b's, and a's heartbeats are refused
    assert claim_next(any_engine, worker="b", now=t0 + timedelta(minutes=19), stale_after=STALE) == first
    assert _status(any_engine, first) == ("running", "b")
    assert not heartbeat(any_engine, run_id=first, worker="a")
    with session_scope(any_engine) as session:
        kinds = [e.kind for e in session.exec(select(RunEvent).where(RunEvent.run_id == first))]
    assert kinds == ["run.claimed", "run.reclaimed"]


def test_fresh_queued_runs_are_left_to_whoever_queued_them(any_engine):
    pid = _prompt(any_engine)
    (run_id,) = _queued(any_engine, pid)
    now = utcnow()
    assert claim_next(any_engine, worker="w", now=now, queued_older_than=timedelta(minutes=5)) is None
    assert claim_next(any_engine, worker="w", now=now, only=[run_id]) == run_id


def test_cancelled_and_finished_runs_are_never_claimed(any_engine):
    pid = _prompt(any_engine)
    cancelled, done = _queued(any_engine, pid, n=2)
    with session_scope(any_engine) as session:
        session.get(OptimizationRun, cancelled).status = "cancelled"
        session.get(OptimizationRun, done).status = "succeeded"
    later = utcnow() + timedelta(days=1)
    assert not claim_run(any_engine, run_id=cancelled, worker="w", now=later)
    assert claim_next(any_engine, worker="w", now=later, queued_older_than=timedelta(0)) is None


class Crash(BaseException):
    """Stands for the process dying (SIGKILL, OOM): not an Exception, so nothing records it."""


def dying(die_at: int):  # type: ignore[no-untyped-def]
    """A provider that answers like the good one until its Nth call, which the process does not survive."""
    seen = []

    def respond(model, prompt):  # type: ignore[no-untyped-def]
        seen.append(model)
        if len(seen) >= die_at:
            raise Crash()
        return classify(prompt_text(prompt))

    return FakeProvider(responder=respond)


async def test_a_crash_mid_run_leaves_it_resumable_and_the_resume_repays_nothing(engine, settings, seeded,
                                                                                gateway_for, good_gateway,
                                                                                good_provider):
    run_id = enqueue(engine, prompt_id=seeded)
    t0 = utcnow()
    assert claim_run(engine, run_id=run_id, worker="first", now=t0)
    doomed = dying(die_at=40)
    with pytest.raises(Crash):
        await execute_claimed(engine=engine, settings=settings, run_id=run_id, worker="first",
                              gateway=gateway_for(doomed))
    assert _status(engine, run_id) == ("running", "first")
    paid_before_crash = len(doomed.calls)
    assert paid_before_crash > 0
    # another worker, later: the run is stale, so it is reclaimed and finished from the cache
    later = utcnow() + timedelta(minutes=11)
    assert claim_next(engine, worker="second", now=later, stale_after=STALE) == run_id
    run = await execute_claimed(engine=engine, settings=settings, run_id=run_id, worker="second",
                                gateway=good_gateway, now=later)
    assert run.status == "succeeded", run.error
    keys = [cache_key(model=c["model"], prompt=c["prompt"], params=c["params"], seed=c["seed"])
            for c in doomed.calls + good_provider.calls]
    assert len(keys) == len(set(keys)), "a call was paid twice"
    assert run.results.cache_hits >= paid_before_crash
    with session_scope(engine) as session:
        assert session.exec(select(Suggestion).where(Suggestion.run_id == run_id)).one().status == "pending"


def test_a_locked_database_is_not_mistaken_for_another_run(engine, monkeypatch):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from trimloop.core.errors import Busy
    from trimloop.optimizer import queue

    prompt_id = _prompt(engine)

    def locked(**_):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT INTO optimizationrun …", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(queue, "create_run", locked)
    with pytest.raises(Busy) as caught:  # no run of the prompt exists: the database was only busy
        enqueue(engine, prompt_id=prompt_id)
    assert "busy" in caught.value.message and caught.value.hint
    monkeypatch.undo()
    first = enqueue(engine, prompt_id=prompt_id)
    monkeypatch.setattr(queue, "create_run", locked)
    assert first is not None and enqueue(engine, prompt_id=prompt_id) is None  # the other writer's run wins
