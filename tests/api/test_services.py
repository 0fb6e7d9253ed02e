"""The service layer: every way of starting a run takes the prompt's lock and records the candidate
fingerprint; every way of syncing supersedes and expires suggestions the same way.

The races run two servers (two apps, each on its own event loop, as two `trimloop serve` processes
would) or a server and `trimloop optimize`'s path (`services.start_run`) against one database, on
both test backends: a barrier releases both requests at once, and of each pair exactly one run is
queued and the other refused with 409 (Conflict). The servers execute nothing (`Queued` stands in
for their RunScheduler), so a run stays queued until the round cancels it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from typer.testing import CliRunner

from tests.api.conftest import make_suggestion, synced
from trimloop.api import services
from trimloop.api.app import create_app
from trimloop.api.cli import _register, app as cli
from trimloop.api.scheduler import Worker
from trimloop.core import store
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.core.errors import Conflict
from trimloop.core.settings import Settings, load_settings
from trimloop.core.tables import AuditEvent, OptimizationRun, Prompt, RunEvent, Suggestion
from trimloop.optimizer.due import FINGERPRINT_EVENT, candidate_prices, due_prompts

ROUNDS = 6  # races per test: one lost race on today's code is enough to fail it
NOW = datetime.now(timezone.utc)
_register()


def token(engine: Engine, name: str, role: str = "engineer") -> dict[str, str]:
    with session_scope(engine) as session:
        _, clear = store.create_token(session=session, name=name, role=role, actor="test")
    return {"Authorization": f"Bearer {clear}"}


def race(*contenders: Callable[[], int]) -> list[int]:
    """Run the contenders at once (a barrier releases them together); their HTTP-style statuses."""
    barrier = threading.Barrier(len(contenders))
    results: list[Any] = [None] * len(contenders)

    def go(i: int) -> None:
        barrier.wait()
        try:
            results[i] = contenders[i]()
        except BaseException as exc:  # noqa: BLE001  (shown by the assertion below)
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(contenders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(isinstance(r, int) for r in results), results
    return results


def active_runs(engine: Engine, prompt_id: int) -> list[OptimizationRun]:
    with session_scope(engine) as session:
        return list(session.exec(select(OptimizationRun).where(
            OptimizationRun.prompt_id == prompt_id, col(OptimizationRun.status).in_(store.RUN_ACTIVE))).all())


def runs_of(engine: Engine, prompt_id: int) -> int:
    with session_scope(engine) as session:
        return len(session.exec(select(OptimizationRun.id).where(OptimizationRun.prompt_id == prompt_id)).all())


def end_round(engine: Engine, prompt_id: int) -> None:
    """Cancel the round's run, so the prompt is free for the next race."""
    for run in active_runs(engine, prompt_id):
        with session_scope(engine) as session:
            store.cancel_run(session=session, run_id=run.id, actor="test")  # type: ignore[arg-type]


class Queued:
    """Stands in for a server's RunScheduler: remembers the runs it is asked to start and starts
    none, so a run stays queued until the test cancels it (the races are about queueing)."""

    def __init__(self) -> None:
        self.scheduled: list[int] = []

    def schedule(self, run_id: int) -> None:
        self.scheduled.append(run_id)


@pytest.fixture
def two_servers(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, TestClient]]:
    apps = [create_app(settings, engine), create_app(settings, engine)]
    for app in apps:
        app.state.runs = Queued()
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        auth = token(engine, "warm-up", role="viewer")
        for client in (one, two):  # FastAPI builds a route's parameters at its first request, in a
            # `warnings.catch_warnings()` block that two threads at once undo for each other
            assert client.post("/runs", json={"prompt_id": 0}, headers=auth).status_code == 403
        yield one, two


def test_two_simultaneous_post_runs_queue_one_run_and_refuse_the_other(engine, settings, two_servers):
    prompt_id = synced(engine, settings)
    auth = token(engine, "eng")
    one, two = two_servers
    for done in range(1, ROUNDS + 1):
        statuses = race(*(lambda c=c: c.post("/runs", json={"prompt_id": prompt_id}, headers=auth).status_code
                          for c in (one, two)))
        assert sorted(statuses) == [202, 409], statuses
        assert runs_of(engine, prompt_id) == done and len(active_runs(engine, prompt_id)) == 1  # never two
        end_round(engine, prompt_id)
    started = one.app.state.runs.scheduled + two.app.state.runs.scheduled  # type: ignore[attr-defined]
    assert len(started) == ROUNDS  # each accepted run, and only those, was handed to its server to execute


def test_post_runs_against_trimloop_optimize_queues_one_run(engine, settings, two_servers):
    prompt_id = synced(engine, settings)
    auth = token(engine, "eng")
    server, _ = two_servers

    def from_the_cli() -> int:  # what `trimloop optimize` does before it claims and executes the run
        try:
            services.start_run(engine=engine, settings=settings, prompt_id=prompt_id, actor="cli",
                               reason="requested with `trimloop optimize`")
        except Conflict as exc:
            assert "already queued or running" in exc.message and exc.hint
            return 409
        return 202

    for done in range(1, ROUNDS + 1):
        statuses = race(lambda: server.post("/runs", json={"prompt_id": prompt_id}, headers=auth).status_code,
                        from_the_cli)
        assert sorted(statuses) == [202, 409], statuses
        assert runs_of(engine, prompt_id) == done and len(active_runs(engine, prompt_id)) == 1
        end_round(engine, prompt_id)
    assert from_the_cli() == 202  # free again once the last run was cancelled; queued, nobody executes it
    clash = server.post("/runs", json={"prompt_id": prompt_id}, headers=auth)
    error = clash.json()["error"]
    assert clash.status_code == 409 and error["code"] == "conflict"
    assert "already queued or running (run" in error["message"] and "triage" in error["where"]
    assert "POST /runs/RUN_ID/cancel" in error["hint"]


def test_a_run_started_through_the_api_records_the_candidate_fingerprint(engine, settings, two_servers):
    prompt_id = synced(engine, settings)
    client, _ = two_servers
    started = client.post("/runs", json={"prompt_id": prompt_id}, headers=token(engine, "eng"))
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    with session_scope(engine) as session:
        [event] = session.exec(select(RunEvent).where(RunEvent.run_id == run_id,
                                                      RunEvent.kind == FINGERPRINT_EVENT)).all()
        [audit] = session.exec(select(AuditEvent).where(AuditEvent.action == "run.create")).all()
    assert event.data["models"] == candidate_prices(settings, "triage") and event.data["fingerprint"]
    assert audit.object_id == str(run_id) and audit.actor.startswith("eng")
    end_round(engine, prompt_id)

    # so when the candidate models change, the prompt is due for that reason
    fewer = settings.model_copy(update={"prompts": {"triage": {"models": ["local/smollm2-135m"]}}})
    with session_scope(engine) as session:
        [unchanged] = due_prompts(session, settings, now=NOW)
        [changed] = due_prompts(session, fewer, now=NOW)
    assert not unchanged.due and unchanged.reason.startswith("up to date"), unchanged
    assert changed.due and changed.reason.startswith(f"candidate models changed since run {run_id}: removed"), changed


# -- sync: one test, three entry points --------------------------------------------------------

BILLING = """---
model: big/model
labels: [production]
---
Is this about billing? {{ticket}}
"""


@pytest.mark.parametrize("entry", ["trimloop sync", "POST /connectors/sync", "scheduler pass"])
def test_every_sync_supersedes_and_expires_the_same_way(entry, home_db, tmp_path: Path, store_dir: Path):
    (store_dir / "prompts" / "billing").mkdir()
    (store_dir / "prompts" / "billing" / "1.md").write_text(BILLING)
    (tmp_path / "trimloop.toml").write_text(f'[connectors.local]\ntype = "files"\npath = "{store_dir}"\n')
    settings = load_settings()  # what the CLI reads too
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        triage = synced(engine, settings)
        with session_scope(engine) as session:
            billing = session.exec(select(Prompt.id).where(Prompt.name == "billing")).one()
        replaced = make_suggestion(engine, triage, savings=1.0)  # its baseline leaves production below
        old = make_suggestion(engine, billing, savings=2.0, created_at=NOW - timedelta(days=31))  # past 30 days
        young = make_suggestion(engine, billing, savings=3.0, created_at=NOW - timedelta(days=29))
        folder = store_dir / "prompts" / "triage"
        (folder / "2.md").write_text((folder / "1.md").read_text().replace("exactly one word only", "one word"))
        (folder / "labels.yaml").write_text(yaml.safe_dump({"production": "2"}))

        superseded, expired, actor = ENTRIES[entry](engine, settings)

        assert (superseded, expired) == ([replaced], [old])
        with session_scope(engine) as session:
            status = {s.id: s.status for s in session.exec(select(Suggestion))}
            audit = {(e.action, e.object_id): e.actor for e in session.exec(select(AuditEvent))}
        assert status == {replaced: "superseded", old: "expired", young: "pending"}
        assert audit[("suggestion.supersede", str(replaced))].startswith(actor)
        assert audit[("suggestion.expire", str(old))].startswith(actor)
        assert audit[("connectors.sync", "local")].startswith(actor)
    finally:
        engine.dispose()


def _cli(engine: Engine, settings: Settings) -> tuple[list[int], list[int], str]:
    result = CliRunner().invoke(cli, ["sync"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {line.split(":")[0]: line.split(": ")[-1] for line in result.output.splitlines() if ": " in line}
    superseded = lines["suggestions superseded (their baseline left production)"]
    expired = lines["suggestions expired (pending too long without a decision)"]
    return [int(i) for i in superseded.split(", ")], [int(i) for i in expired.split(", ")], "cli"


def _api(engine: Engine, settings: Settings) -> tuple[list[int], list[int], str]:
    with TestClient(create_app(settings, engine)) as client:
        reply = client.post("/connectors/sync", json={}, headers=token(engine, "eng-sync"))
    assert reply.status_code == 200, reply.text
    [report] = reply.json()
    return report["superseded"], report["expired"], "eng-sync"


def _scheduler(engine: Engine, settings: Settings) -> tuple[list[int], list[int], str]:
    report = asyncio.run(Worker(engine=engine, settings=settings, gateway=object(), name="w1").run_pass(max_runs=0))
    assert [r.connector for r in report.synced] == ["local"]
    return report.superseded, report.expired, "scheduler"


ENTRIES: dict[str, Callable[[Engine, Settings], tuple[list[int], list[int], str]]] = {
    "trimloop sync": _cli, "POST /connectors/sync": _api, "scheduler pass": _scheduler}
