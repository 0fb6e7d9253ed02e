"""Two `trimloop worker` processes on one database never run the same prompt at once, and every
queued run is executed exactly once.

Three prompts (alpha, beta, gamma) on the fake OpenAI server, with six queued runs left behind as
racing schedulers could leave them: alpha ×3, beta ×2, gamma ×1, all older than the scheduler's
orphan age, so any worker may take them. The provider first holds every request: both workers
start, each claims a run, and the test sees them stuck mid-run on the provider, one on alpha, one
on beta, with alpha's other runs still queued (one run per prompt at a time). Then the provider
answers, and the workers drain the queue. The proof comes from the stored records: each run has
one claim (no reclaim, no resume), one start and one end, by one of the two workers; runs of one
prompt never overlap in time; and the provider answered exactly the calls the runs recorded, so
nothing ran twice. The response cache is off, so every run really pays its calls.

The test runs in both passes of the suite: on SQLite (the database file's write lock serializes
claims) and on PostgreSQL (the prompt's row lock does).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlmodel import select

from tests.api.test_worker_crash import toml
from tests.optimizer.provider_workspace import (
    PARAMS,
    models_config,
    paid_at_provider,
    poll_until,
    prompt_config,
    server_args,
)
from trimloop.api.scheduler import ORPHAN_AFTER
from trimloop.connectors.sync import sync
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.core.settings import load_settings
from trimloop.core.tables import OptimizationRun, Prompt, RunEvent, utcnow
from trimloop.testing.fake_openai import running
from trimloop.testing.sentiment import VERBOSE, review

QUEUE = ["alpha", "alpha", "alpha", "beta", "beta", "gamma"]  # oldest first
DEADLINE_S = 240.0


def write_store(folder: Path, names: list[str]) -> Path:
    """One production prompt per name (its own first line, so the prompts' calls differ) and 120 logs each."""
    rng = random.Random(11)
    front = yaml.safe_dump({"model": "fake/big", "params": PARAMS, "labels": ["production"]})
    lines = []
    start = utcnow() - timedelta(days=20)
    for name in names:
        (folder / "prompts" / name).mkdir(parents=True)
        (folder / "prompts" / name / "1.md").write_text(f"---\n{front}---\nTask {name}.\n{VERBOSE}\n")
        for i in range(120):
            text, label = review(rng, i)
            lines.append(json.dumps({"id": f"{name}-{i}", "prompt": name, "version": "1", "inputs": {"text": text},
                                     "output": f" {label}", "model": "fake/big", "input_tokens": 160,
                                     "output_tokens": 1, "cost": 0.008, "latency_s": 0.3,
                                     "called_at": (start + timedelta(hours=2 * i)).isoformat()}))
    (folder / "logs").mkdir()
    (folder / "logs" / "calls.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def wait_until(what: str, check: Callable[[], Any], timeout: float = DEADLINE_S) -> Any:
    return poll_until(what, check, timeout)


def start_worker(log: Path, db_url: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-c", "from trimloop.api.cli import main; main()",
                                 "worker", "--once", "--no-sync", "--json"],
                                stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, TRIMLOOP_DATABASE_URL=db_url))


def test_two_workers_run_each_queued_run_once_and_never_one_prompt_twice_at_once(tmp_path, db_url):
    store = write_store(tmp_path / "store", sorted(set(QUEUE)))
    with running(*server_args(tmp_path)) as url:
        (tmp_path / "trimloop.toml").write_text(toml({
            "gateway": {"cache": False},
            "connectors": {"local": {"type": "files", "path": str(store)}},
            "models": models_config(url),
            # margin 0.1: 36 holdout items can certify at it (at 0.05 the preflight blocks: 52 needed)
            "prompts": {name: prompt_config(dataset_size=60, margin=0.1) for name in set(QUEUE)},
            "scheduler": {"heartbeat_seconds": 1},
        }))
        upgrade(db_url)
        engine = make_engine(db_url)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            [report] = sync(engine=engine, settings=load_settings())
            assert report.fatal is None and report.logs_added == 120 * len(set(QUEUE)), report.to_dict()
            orphaned = utcnow() - ORPHAN_AFTER - timedelta(minutes=1)  # any worker's to take
            with session_scope(engine) as session:
                ids = {p.name: p.id for p in session.exec(select(Prompt))}
                runs = [OptimizationRun(prompt_id=ids[name], created_at=orphaned) for name in QUEUE]
                session.add_all(runs)
                session.flush()
                run_ids = [r.id for r in runs]
            prompt_of = dict(zip(run_ids, QUEUE))

            httpx.post(f"{url}/_hold", json={"on": True}, timeout=10)
            workers = [start_worker(tmp_path / f"worker-{i}.log", db_url) for i in (1, 2)]

            def both_stuck() -> list[OptimizationRun] | None:
                held = httpx.get(f"{url}/_stats", timeout=10).json()["held"]
                with session_scope(engine) as session:
                    busy = list(session.exec(select(OptimizationRun).where(OptimizationRun.status == "running")))
                return busy if len(busy) == 2 and held >= 2 else None

            busy = wait_until("both workers to claim a run and call the held provider", both_stuck)
            time.sleep(1.0)  # while they wait, nothing else may start
            with session_scope(engine) as session:
                status = {r.id: r.status for r in session.exec(select(OptimizationRun))}
            assert sorted(prompt_of[r.id] for r in busy) == ["alpha", "beta"], busy
            assert busy[0].worker != busy[1].worker, busy
            assert [status[i] for i in run_ids] == ["running", "queued", "queued", "running", "queued", "queued"]
            httpx.post(f"{url}/_hold", json={"on": False}, timeout=10)

            for i, proc in enumerate(workers, 1):
                code = proc.wait(timeout=DEADLINE_S)
                assert code == 0, (tmp_path / f"worker-{i}.log").read_text()[-3000:]
            reports = [json.loads((tmp_path / f"worker-{i}.log").read_text()) for i in (1, 2)]
            bodies = paid_at_provider(url)
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
            httpx.post(f"{url}/_hold", json={"on": False, "drop": True}, timeout=10)  # so the server can stop

    try:
        with session_scope(engine) as session:
            done = {r.id: r for r in session.exec(select(OptimizationRun))}
            events = list(session.exec(select(RunEvent).order_by(RunEvent.id)))
    finally:
        engine.dispose()
    assert sorted(done) == sorted(run_ids)  # no run was added or lost

    # each worker's own report: together they executed every run, none twice
    executed = [[e["run_id"] for e in r["executed"]] for r in reports]
    assert sorted(executed[0] + executed[1]) == sorted(run_ids), executed
    assert all(executed), f"both workers executed runs: {executed}"

    names = {run.worker for run in done.values()}
    assert len(names) == 2, names
    for run_id, run in done.items():
        kinds = [e.kind for e in events if e.run_id == run_id]
        assert run.status == "succeeded", (run_id, run.status, run.error)
        assert kinds.count("run.claimed") == 1 and kinds.count("run.started") == 1, kinds
        assert "run.reclaimed" not in kinds and "run.resumed" not in kinds, kinds
        assert kinds[-1] == "run.succeeded" and kinds.count("run.succeeded") == 1, kinds
        claim = next(e for e in events if e.run_id == run_id and e.kind == "run.claimed")
        assert claim.data["worker"] == run.worker
        assert run.started_at is not None and run.finished_at is not None and run.started_at < run.finished_at
        assert run.calls_made > 0

    # one prompt, one run at a time: its runs' [started, finished] intervals never overlap
    for name in set(QUEUE):
        spans = sorted((done[i].started_at, done[i].finished_at, i) for i in run_ids if prompt_of[i] == name)
        for (_, end, first), (start, _, then) in zip(spans, spans[1:]):
            assert end <= start, f"{name}: run {then} started at {start} before run {first} ended at {end}"
    # while runs of different prompts did overlap, on different workers (the workers ran at once)
    overlapping = [(a, b) for a, b in combinations(run_ids, 2)
                   if prompt_of[a] != prompt_of[b] and done[a].worker != done[b].worker
                   and done[a].started_at < done[b].finished_at and done[b].started_at < done[a].finished_at]
    assert overlapping, "the two workers never ran at the same time"

    # the provider answered exactly the calls the runs recorded: nothing was executed twice
    answered = sum(b["answered"] for b in bodies.values())
    assert answered == sum(run.calls_made for run in done.values())
    assert all(b["failed"] == 0 and b["abandoned"] == 0 for b in bodies.values())
