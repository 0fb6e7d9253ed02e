"""Crash and resume: `trimloop worker` is SIGKILLed halfway through an optimization run; a second
worker reclaims the run and finishes it. Nothing is paid twice, exactly one suggestion results,
and nothing half-written is left behind.

The provider is the fake OpenAI server (a real HTTP server in its own process), slowed to 60 ms a
call and counting every request per distinct body. When the run's stored progress passes a third
of its calls, the server holds new requests; once every call the worker has in flight is held
and every answer the server delivered is committed to the response cache, the worker's whole
process group gets SIGKILL: it dies with calls in flight, as a worker does that crashes while it
waits on its provider. Those held calls are then failed (their client is gone): they were never
answered, so never billed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, text
from sqlmodel import select

from tests.optimizer.provider_workspace import (
    poll_until,
    billed,
    models_config,
    paid_at_provider,
    prompt_config,
    server_args,
    write_store,
)
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.core.settings import Settings
from trimloop.testing.fake_openai import running
from trimloop.core.tables import (
    CachedResponse,
    Candidate,
    EvalRun,
    OptimizationRun,
    RunEvent,
    Suggestion,
    utcnow,
)

STALE_S = 3.0  # scheduler.stale_after_minutes = 0.05
DEADLINE_S = 60.0


def toml(settings: dict[str, Any]) -> str:
    """The few shapes this test needs: [table] and [table."key"] of scalars and lists."""
    lines = []

    def table(name: str, values: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict))
        for k, v in values.items():
            if isinstance(v, dict):
                table(f"{name}.{json.dumps(k)}", v)

    for name, values in settings.items():
        table(name, values)
    return "\n".join(lines) + "\n"


def wait_until(what: str, check: Callable[[], Any], timeout: float = DEADLINE_S) -> Any:
    return poll_until(what, check, timeout)


def start_worker(log: Path) -> subprocess.Popen[bytes]:
    """`trimloop worker --once --json` in its own process group (so SIGKILL takes all of it)."""
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-c", "from trimloop.api.cli import main; main()",
                                 "worker", "--once", "--json"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ))


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_a_killed_worker_s_run_is_resumed_by_the_next_without_paying_twice(tmp_path, home_db):
    store = write_store(tmp_path / "store")
    with running(*server_args(tmp_path, "--latency-ms", "60")) as url:
        (tmp_path / "trimloop.toml").write_text(toml({
            "connectors": {"local": {"type": "files", "path": str(store)}},
            "models": models_config(url),
            "prompts": {"sentiment": prompt_config()},
            "scheduler": {"stale_after_minutes": STALE_S / 60, "heartbeat_seconds": 0.5},
        }))
        upgrade(home_db)
        engine = make_engine(home_db)
        first = second = None
        try:
            first = start_worker(tmp_path / "worker-1.log")

            def progress() -> tuple[int, int] | None:
                with session_scope(engine) as session:
                    run = session.exec(select(OptimizationRun)).first()
                    if run is None or run.status != "running":
                        assert run is None or run.status == "queued", (run.status, run.error)
                        return None
                    return (run.id, run.calls_made) if run.calls_made >= 100 else None

            run_id, calls_at_halfway = wait_until("the run to pass 100 of its 280 calls", progress)
            httpx.post(f"{url}/_hold", json={"on": True})

            def quiet() -> dict[str, Any] | None:
                stats = httpx.get(f"{url}/_stats").json()
                with engine.connect() as conn:
                    committed = conn.execute(text("SELECT count(*) FROM cachedresponse")).scalar_one()
                held = stats["held"] >= 1 and stats["inflight"] == stats["held"]
                return stats if held and committed == stats["answered"] else None

            at_kill = wait_until("the worker's calls to be held and its answers committed", quiet)
            kill_group(first)
            bodies_before = paid_at_provider(url)
            httpx.post(f"{url}/_hold", json={"on": False, "drop": True})  # the dead worker's calls fail

            with session_scope(engine) as session:
                run = session.get(OptimizationRun, run_id)
                assert run.status == "running" and run.finished_at is None
                dead_worker = run.worker
            stale = lambda: utcnow() - _heartbeat(engine, run_id) > timedelta(seconds=STALE_S)
            wait_until("the dead worker's heartbeat to go stale", stale)

            second = start_worker(tmp_path / "worker-2.log")
            assert second.wait(timeout=DEADLINE_S) == 0, (tmp_path / "worker-2.log").read_text()[-3000:]
            report = json.loads((tmp_path / "worker-2.log").read_text())
        finally:
            for proc in (first, second):
                if proc is not None:
                    kill_group(proc)
        bodies = paid_at_provider(url)
        settings = Settings(models=models_config(url))

    # the second worker reclaimed the run and finished it
    (executed,) = report["executed"]
    assert executed["run_id"] == run_id and executed["status"] == "succeeded", executed
    with session_scope(engine) as session:
        run = session.get(OptimizationRun, run_id)
        events = session.exec(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id)).all()
        kinds = [e.kind for e in events]
        assert kinds.count("run.claimed") == 1 and kinds.count("run.reclaimed") == 1
        reclaimed = next(e for e in events if e.kind == "run.reclaimed")
        assert reclaimed.data["previous_worker"] == dead_worker and reclaimed.data["worker"] != dead_worker
        # it resumed from its stored progress: the ledger picked up what the dead worker paid
        (resumed,) = [e for e in events if e.kind == "run.resumed"]
        assert kinds.index("run.reclaimed") < kinds.index("run.resumed")
        assert resumed.data["calls_before"] >= calls_at_halfway
        assert resumed.data["calls_before"] == at_kill["answered"]  # every answer, committed

        # no request body was answered (billed) twice; the calls cut off by the kill were never answered
        assert at_kill["held"] >= 1 and at_kill["answered"] >= calls_at_halfway
        twice = {k: b for k, b in bodies.items() if b["answered"] > 1}
        assert not twice, f"{len(twice)} paid calls were made twice"
        answered_before = {k for k, b in bodies_before.items() if b["answered"]}
        assert len(answered_before) == at_kill["answered"]
        assert all(bodies[k]["received"] == bodies_before[k]["received"] for k in answered_before), \
            "the resumed run asked the provider again for an answer it already had"
        cut_off = {k for k, b in bodies_before.items() if not b["answered"]}
        # `held` was read just before the kill; on a loaded machine more requests can arrive in between
        assert len(cut_off) >= at_kill["held"] and all(bodies[k]["answered"] == 1 for k in cut_off)
        assert run.results.cache_hits >= len(answered_before)

        # the run's ledger is the provider's bill: calls and dollars, across both workers
        paid_calls, paid_dollars = billed(bodies, settings)
        assert run.calls_made == paid_calls == len(bodies)
        assert run.spent_dollars == pytest.approx(paid_dollars, abs=1e-9)
        cached = session.exec(select(func.count(), func.sum(CachedResponse.cost))
                              .where(CachedResponse.run_id == run_id)).one()
        assert cached[0] == paid_calls and cached[1] == pytest.approx(paid_dollars, abs=1e-9)

        # exactly one suggestion, whole; nothing left half-written
        (suggestion,) = session.exec(select(Suggestion)).all()
        assert suggestion.run_id == run_id and suggestion.status == "pending"
        assert suggestion.evidence and suggestion.candidate_id is not None
        assert session.get(Candidate, suggestion.candidate_id).run_id == run_id
        assert suggestion.optimization_spend == pytest.approx(run.spent_dollars, abs=1e-9)
        assert run.status == "succeeded" and run.error is None and run.finished_at is not None
        assert run.results.suggestion_id == suggestion.id
        assert session.exec(select(OptimizationRun).where(OptimizationRun.status.in_(("queued", "running")))
                            ).all() == []
        assert session.exec(select(EvalRun).where(EvalRun.status == "running")).all() == []
        assert kinds[-1] == "run.succeeded" and kinds.count("suggestion.created") == 1
    engine.dispose()


def _heartbeat(engine, run_id: int):  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return session.get(OptimizationRun, run_id).heartbeat_at
