"""The scheduled loop with a controllable clock: sync → due → queue → claim → execute,
through the real gateway with a fake provider."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text
from sqlmodel import select

from tests.optimizer.conftest import gateway_for, good_gateway, good_provider, seeded  # noqa: F401  (fixtures)
from trimloop.api.scheduler import JOB_ID, JOBS_TABLE, Worker, build_scheduler
from trimloop.core.db import session_scope
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, Suggestion, utcnow


@pytest.fixture
def settings(tmp_path) -> Settings:  # the seeded `sentiment` prompt's options, plus an (empty) files store
    (tmp_path / "store" / "prompts").mkdir(parents=True)
    return Settings(home=tmp_path / "home", connectors={"local": {"type": "files", "path": str(tmp_path / "store")}},
                    prompts={"sentiment": {"rungs": [8, 24], "dataset_size": 200, "margin": 0.05,
                                           "holdout_fraction": 0.6}},
                    scheduler={"min_new_logs": 50, "max_days_between_runs": 7, "interval_minutes": 15})


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


async def test_a_pass_syncs_then_runs_due_prompts_and_the_next_pass_waits_for_review(engine, settings, seeded,
                                                                                      good_gateway):
    clock = Clock()
    worker = Worker(engine=engine, settings=settings, gateway=good_gateway, clock=clock, name="w1")
    first = await worker.run_pass()
    assert [r.connector for r in first.synced] == ["local"] and not first.synced[0].fatal
    assert [(d.prompt_name, d.due) for d in first.decisions] == [("sentiment", True)]
    (run,) = first.executed
    assert run.status == "succeeded" and run.worker == "w1" and run.results.suggestion_id, run.error
    clock.now += timedelta(days=1)
    second = await worker.run_pass()
    assert second.executed == [] and second.queued == []
    assert second.decisions[0].reason == f"suggestion {run.results.suggestion_id} is pending review"
    assert second.to_dict()["decisions"][0]["due"] is False


async def test_two_workers_at_once_make_one_run(engine, settings, seeded, good_gateway):
    clock = Clock()
    workers = [Worker(engine=engine, settings=settings, gateway=good_gateway, clock=clock, name=f"w{i}")
               for i in range(2)]
    reports = await asyncio.gather(*(w.run_pass(do_sync=False) for w in workers))
    assert sum(len(r.executed) for r in reports) == 1
    assert sum(len(r.queued) for r in reports) == 1
    with session_scope(engine) as session:
        assert len(session.exec(select(OptimizationRun)).all()) == 1


async def test_a_rejected_candidate_is_never_proposed_again(engine, settings, seeded, good_gateway):
    clock = Clock()
    worker = Worker(engine=engine, settings=settings, gateway=good_gateway, clock=clock)
    await worker.run_pass(do_sync=False)
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
        suggestion.status, rejected = "rejected", suggestion.candidate_sha
    clock.now += timedelta(hours=1)
    assert (await worker.run_pass(do_sync=False)).decisions[0].reason.startswith("up to date")
    clock.now += timedelta(days=8)
    again = await worker.run_pass(do_sync=False)
    assert again.decisions[0].due and again.decisions[0].reason.startswith("no run for")
    (run,) = again.executed
    assert run.status == "succeeded", run.error
    with session_scope(engine) as session:
        shas = session.exec(select(Suggestion.candidate_sha).where(Suggestion.run_id == run.id)).all()
    assert rejected not in shas


def test_the_scheduler_keeps_its_job_in_the_database(engine, settings):
    scheduler = build_scheduler(engine=engine, settings=settings, run_now=False)
    scheduler.start(paused=True)
    try:
        job = scheduler.get_job(JOB_ID)
        assert job.trigger.interval == timedelta(minutes=15) and job.func_ref.endswith(":scheduled_pass")
        assert JOBS_TABLE in inspect(engine).get_table_names()
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT id FROM {JOBS_TABLE}")).scalars().all() == [JOB_ID]
    finally:
        scheduler.shutdown(wait=False)
    again = build_scheduler(engine=engine, settings=settings, run_now=False)  # a restart replaces, never doubles
    again.start(paused=True)
    try:
        assert [j.id for j in again.get_jobs()] == [JOB_ID]
    finally:
        again.shutdown(wait=False)


async def test_a_scheduled_run_announces_its_suggestion_to_the_webhooks(engine, settings, seeded, good_gateway,
                                                                       monkeypatch):
    from tests.api.test_webhooks import Receiver, hooked

    monkeypatch.setenv("TEST_HOOK_SECRET", "s3cret-for-tests")
    receiver = Receiver()
    try:
        hooked_settings = hooked(settings, receiver.url, events=["suggestion.created", "run.failed"])
        worker = Worker(engine=engine, settings=hooked_settings, gateway=good_gateway, clock=Clock(), name="w1")
        (run,) = (await worker.run_pass()).executed
        assert run.status == "succeeded", run.error
        [(headers, body)] = receiver.requests
        payload = json.loads(body)
        assert payload["event"] == "suggestion.created"
        assert payload["data"]["suggestion_id"] == run.results.suggestion_id
        assert headers["X-Trimloop-Signature"].startswith("sha256=")
    finally:
        receiver.close()
