"""`trimloop serve` runs the API, the web UI and the scheduler in one process; `--no-scheduler` only
the API. The scheduler's passes run on the server's loop with its gateway, and they and the runs
`POST /runs` starts never run one prompt twice at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import select

from tests.optimizer.conftest import gateway_for, good_gateway, good_provider, seeded  # noqa: F401  (fixtures)
from tests.optimizer.provider_workspace import poll_until
from trimloop.api.app import create_app
from trimloop.api.scheduler import JOB_ID, JOBS_TABLE
from trimloop.core import store
from trimloop.core.db import make_engine, session_scope
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, Prompt, Suggestion
from trimloop.testing.fake_openai import free_port

PROMPT = """---
model: big/model
---
system:
Sort tickets into billing, bug or other.

user:
Ticket: {{ticket}}
"""


def _serve(tmp_path: Path, db_url: str, *args: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`trimloop serve` in a subprocess on a free loopback port and the database at `db_url`, over a
    files store with one prompt (no production label, so no pass optimizes anything); its output
    goes to a log file."""
    store_dir = tmp_path / "store"
    (store_dir / "prompts" / "triage").mkdir(parents=True)
    (store_dir / "prompts" / "triage" / "1.md").write_text(PROMPT)
    config = tmp_path / "trimloop.toml"
    config.write_text(f'[connectors.local]\ntype = "files"\npath = "{store_dir}"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMLOOP_")}
    env.update(TRIMLOOP_HOME=str(tmp_path / "home"), TRIMLOOP_DATABASE_URL=db_url, TRIMLOOP_CONFIG=str(config),
               TRIMLOOP_API__PORT=str(port),
               TRIMLOOP_SCHEDULER__INTERVAL_MINUTES="0.02")  # a pass every 1.2 s
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", "from trimloop.api.cli import main; main()", "serve", *args],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", log_path


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).json() == {"status": "ok", "version": "0.1.0"}
    except httpx.HTTPError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_serve_runs_the_api_and_the_scheduler_in_one_process(tmp_path, db_url):
    proc, url, log_path = _serve(tmp_path, db_url)
    try:
        poll_until("/health", lambda: _healthy(url) or proc.poll() is not None, 60)
        assert proc.poll() is None, log_path.read_text()
        poll_until("two scheduler passes", lambda: log_path.read_text().count("pass done") >= 2, 30)
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:  # the job lives in the database job store
                assert conn.execute(text(f"SELECT id FROM {JOBS_TABLE}")).scalars().all() == [JOB_ID]
            with session_scope(engine) as session:  # the pass synced the files store
                assert session.exec(select(Prompt.name)).all() == ["triage"]
        finally:
            engine.dispose()
        assert _healthy(url)
    finally:
        _stop(proc)
    out = log_path.read_text()
    assert "scheduler started" in out and "scheduler stopped" in out and "Traceback" not in out, out


def test_serve_no_scheduler_runs_only_the_api(tmp_path, db_url):
    proc, url, log_path = _serve(tmp_path, db_url, "--no-scheduler")
    try:
        poll_until("/health", lambda: _healthy(url) or proc.poll() is not None, 60)
        assert proc.poll() is None, log_path.read_text()
        time.sleep(3)  # more than two intervals
    finally:
        _stop(proc)
    out = log_path.read_text()
    assert "Application startup complete" in out and "scheduler" not in out and "Traceback" not in out, out
    engine = make_engine(db_url)
    try:
        with session_scope(engine) as session:
            assert session.exec(select(Prompt)).all() == []  # nothing synced
    finally:
        engine.dispose()


def _status(engine, run_id: int) -> str:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:  # from the database: no request (and no token write) while it runs
        run = session.get(OptimizationRun, run_id)
        assert run is not None
        return run.status


@pytest.fixture
def settings(tmp_path) -> Settings:  # the seeded `sentiment` prompt's options, due after 50 new logs
    return Settings(home=tmp_path / "home", api={"failed_logins_per_minute": 1000},
                    prompts={"sentiment": {"rungs": [8, 24], "dataset_size": 200, "margin": 0.05,
                                           "holdout_fraction": 0.6}},
                    scheduler={"min_new_logs": 50, "interval_minutes": 60})


def test_a_scheduled_pass_and_post_runs_never_run_one_prompt_twice(engine, settings, seeded, good_gateway):
    with session_scope(engine) as session:
        _, clear = store.create_token(session=session, name="eng", role="engineer", actor="test")
    auth = {"Authorization": f"Bearer {clear}"}
    app = create_app(settings, engine, good_gateway, scheduler=True)  # what `trimloop serve` builds
    host = app.state.passes
    assert host is not None

    def running() -> list[OptimizationRun]:
        with session_scope(engine) as session:
            return list(session.exec(select(OptimizationRun).where(OptimizationRun.status == "running")).all())

    with TestClient(app) as client:  # the lifespan starts the scheduler: a pass at once
        (run,) = poll_until("the scheduled pass to start its run", running, 30)
        assert not run.worker.startswith("api:")  # the pass's own worker, on the scheduler's thread
        clash = client.post("/runs", json={"prompt_id": seeded}, headers=auth)
        assert clash.status_code == 409, clash.text  # one run per prompt
        poll_until("the pass to finish", lambda: host.passes >= 1, 60)
        with session_scope(engine) as session:
            (done,) = session.exec(select(OptimizationRun)).all()
            assert done.status == "succeeded", done.error
            assert len(session.exec(select(Suggestion)).all()) == 1
        again = client.post("/runs", json={"prompt_id": seeded}, headers=auth)  # the API's own run goes ahead
        assert again.status_code == 202, again.text
        poll_until("the API's run", lambda: _status(engine, again.json()["id"]) not in ("queued", "running"), 60)
    with session_scope(engine) as session:
        workers = [r.worker for r in session.exec(select(OptimizationRun).order_by(OptimizationRun.id)).all()]
    assert workers[0] != workers[1] and workers[1].startswith("api:")
