"""Scale-out: two `trimloop serve` and two `trimloop worker` processes on one fresh PostgreSQL
database, at once. Both servers receive the same OTLP spans (each batch once at each server, so
every span arrives twice, from two processes) while optimization runs execute: two queued through
the API (one on each server, which runs it at once) and two left queued as a crashed scheduler
leaves them (older than the orphan age), which the workers take. The stored records prove it:

- no duplicate logs: every span is stored or dropped once, whichever server got it first;
- no run executed twice: each run has one claim, one start and one end, and the fake provider
  answered exactly the calls the runs recorded (the response cache is off);
- the traffic aggregates equal a recount: aggregated records = records kept + records the
  reservoir dropped (counted as it dropped them), = the distinct spans sent.

PostgreSQL only: on SQLite the processes would take turns at one file's write lock, which is
what `trimloop serve` on SQLite is not for (docs/deployment.md, "Scale-out").
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select as sa_select
from sqlmodel import select

from tests.api.test_serve import _healthy, _stop
from tests.api.test_two_workers import write_store
from tests.api.test_worker_crash import toml
from tests.optimizer.provider_workspace import models_config, paid_at_provider, poll_until, prompt_config, server_args
from trimloop.api.scheduler import ORPHAN_AFTER
from trimloop.connectors.sync import sync
from trimloop.core import store
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.core.settings import load_settings
from trimloop.core.tables import LogRecord, OptimizationRun, Prompt, RunEvent, TrafficAggregate, utcnow
from trimloop.testing.fake_openai import free_port, running

pytestmark = pytest.mark.postgresql_only

API_PROMPTS, ORPHAN_PROMPTS = ["alpha", "beta"], ["gamma", "delta"]
SPANS, BATCH, KEPT_PER_DAY = 3000, 150, 100
DEADLINE_S = 120.0
TRIAGE = """---
model: fake/big
params: {temperature: 0, max_tokens: 8}
---
system:
Sort support tickets into billing, bug or other.

user:
Ticket: {{ticket}}
"""


def span_batches(start_ns: int) -> list[bytes]:
    """Gzipped protobuf OTLP requests of GenAI chat spans for prompt `triage` (as bench.otlp builds them)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def kv(key: str, value: object) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(int_value=value) if isinstance(value, int)
                        else AnyValue(string_value=str(value)))

    out = []
    for first in range(0, SPANS, BATCH):
        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        for i in range(first, first + BATCH):
            span = scope.spans.add(trace_id=(i + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"),
                                   name="chat fake/big", start_time_unix_nano=start_ns + i * 1_000_000,
                                   end_time_unix_nano=start_ns + i * 1_000_000 + 300_000_000)
            span.attributes.extend([
                kv("gen_ai.operation.name", "chat"), kv("gen_ai.request.model", "fake/big"),
                kv("gen_ai.response.model", "fake/big"), kv("trimloop.prompt", "triage"),
                kv("trimloop.prompt.version", "1"), kv("trimloop.inputs", json.dumps({"ticket": f"ticket {i}"})),
                kv("gen_ai.usage.input_tokens", 40 + i % 17), kv("gen_ai.usage.output_tokens", 1)])
        out.append(gzip.compress(request.SerializeToString()))
    return out


def start(tmp_path: Path, db_url: str, name: str, *args: str, port: int | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMLOOP_")}
    env.update(TRIMLOOP_HOME=str(tmp_path / "home"), TRIMLOOP_DATABASE_URL=db_url,
               TRIMLOOP_CONFIG=str(tmp_path / "trimloop.toml"))
    if port is not None:
        env["TRIMLOOP_API__PORT"] = str(port)
    with (tmp_path / f"{name}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-c", "from trimloop.api.cli import main; main()", *args],
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def push(base: str, token: str, bodies: list[bytes], answers: list[int]) -> None:
    """Send each batch, again after Retry-After on 429 (as OTLP exporters do); note the final codes."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-protobuf",
               "Content-Encoding": "gzip"}
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        for body in bodies:
            # 429 is the receiver's backpressure: wait what it asks (the exporter's protocol, not a
            # guess at timing), until the batch is taken or the deadline says the queue never drained
            while (reply := http.post("/v1/traces", content=body)).status_code == 429:
                assert time.monotonic() < deadline, f"{base}: ingest queue still full after 120 s"
                time.sleep(float(reply.headers.get("Retry-After", "1")))
            answers.append(reply.status_code)


def test_two_servers_and_two_workers_on_one_database(tmp_path, db_url, monkeypatch):
    store_dir = write_store(tmp_path / "store", API_PROMPTS + ORPHAN_PROMPTS)
    (store_dir / "prompts" / "triage").mkdir()
    (store_dir / "prompts" / "triage" / "1.md").write_text(TRIAGE)
    with running(*server_args(tmp_path)) as provider:
        (tmp_path / "trimloop.toml").write_text(toml({
            "gateway": {"cache": False},
            "connectors": {"local": {"type": "files", "path": str(store_dir)}},
            "models": models_config(provider),
            "prompts": {name: prompt_config(dataset_size=60, margin=0.1) for name in API_PROMPTS + ORPHAN_PROMPTS},
            "scheduler": {"heartbeat_seconds": 1},
            "reservoir": {"per_day": KEPT_PER_DAY},
        }))
        monkeypatch.setenv("TRIMLOOP_CONFIG", str(tmp_path / "trimloop.toml"))  # for load_settings() below
        upgrade(db_url)
        engine = make_engine(db_url)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            [report] = sync(engine=engine, settings=load_settings())
            assert report.fatal is None, report.to_dict()
            orphaned = utcnow() - ORPHAN_AFTER - timedelta(minutes=1)
            with session_scope(engine) as session:
                ids = {p.name: p.id for p in session.exec(select(Prompt))}
                orphans = [OptimizationRun(prompt_id=ids[name], created_at=orphaned) for name in ORPHAN_PROMPTS]
                session.add_all(orphans)
                session.flush()
                run_ids = [r.id for r in orphans]
                _, ingest = store.create_token(session=session, name="app", role="ingest", actor="test")
                _, engineer = store.create_token(session=session, name="ops", role="engineer", actor="test")
            ports = [free_port(), free_port()]
            bases = [f"http://127.0.0.1:{p}" for p in ports]
            for i, port in enumerate(ports):
                procs[f"serve-{i}"] = start(tmp_path, db_url, f"serve-{i}", "serve", "--no-scheduler", port=port)
            for i, base in enumerate(bases):
                poll_until(f"serve-{i} healthy", lambda: _healthy(base) or procs[f"serve-{i}"].poll() is not None, 60)
                assert procs[f"serve-{i}"].poll() is None, (tmp_path / f"serve-{i}.log").read_text()[-3000:]

            batches = span_batches(time.time_ns() - 3_600_000_000_000)  # an hour ago: one day, inside retention
            answers: list[int] = []
            # each server gets every batch once, in opposite orders: every span arrives twice, concurrently
            senders = [threading.Thread(target=push, args=(bases[0], ingest, batches, answers)),
                       threading.Thread(target=push, args=(bases[1], ingest, batches[::-1], answers))]
            for t in senders:
                t.start()
            for base, name in zip(bases, API_PROMPTS):  # one run queued through each server's API
                reply = httpx.post(f"{base}/runs", json={"prompt_id": ids[name]}, timeout=60,
                                   headers={"Authorization": f"Bearer {engineer}"})
                assert reply.status_code == 202, reply.text
                run_ids.append(reply.json()["id"])
            for i in (0, 1):
                procs[f"worker-{i}"] = start(tmp_path, db_url, f"worker-{i}", "worker", "--once", "--no-sync",
                                             "--json")
            for t in senders:
                t.join(timeout=DEADLINE_S)
            for i in (0, 1):
                code = procs[f"worker-{i}"].wait(timeout=DEADLINE_S)
                assert code == 0, (tmp_path / f"worker-{i}.log").read_text()[-3000:]

            def finished() -> bool:
                with session_scope(engine) as session:
                    return all(r.status in ("succeeded", "failed", "cancelled")
                               for r in session.exec(select(OptimizationRun)))
            poll_until("every run to finish", finished, DEADLINE_S)
            bodies = paid_at_provider(provider)
        finally:
            for name, proc in procs.items():
                _stop(proc) if name.startswith("serve") else (proc.poll() is None and proc.kill())

    assert answers == [200] * (2 * len(batches)), answers
    try:
        with session_scope(engine) as session:
            runs = {r.id: r for r in session.exec(select(OptimizationRun))}
            events = list(session.exec(select(RunEvent).order_by(RunEvent.id)))
            triage = session.exec(select(Prompt).where(Prompt.name == "triage")).one()
            kept, distinct = session.execute(sa_select(func.count(), func.count(func.distinct(LogRecord.external_id)))
                                             .where(LogRecord.connector == "otlp")).one()
            records, dropped = session.execute(
                sa_select(func.sum(TrafficAggregate.records), func.sum(TrafficAggregate.dropped))
                .where(TrafficAggregate.prompt_id == triage.id)).one()
    finally:
        engine.dispose()

    # no duplicate logs; the aggregates equal the recount from the records kept plus those dropped
    assert kept == distinct and kept <= KEPT_PER_DAY + KEPT_PER_DAY // 10 + 1, (kept, distinct)
    assert dropped > 0 and records == kept + dropped == SPANS, (records, kept, dropped)

    # no run twice: every run (ours, and any a worker's pass queued) claimed, started and ended once
    assert set(run_ids) <= set(runs), (run_ids, sorted(runs))
    workers = {}
    for run_id, run in runs.items():
        kinds = [e.kind for e in events if e.run_id == run_id]
        assert run.status == "succeeded", (run_id, run.status, run.error)
        assert kinds.count("run.claimed") == 1 and kinds.count("run.started") == 1, (run_id, kinds)
        assert "run.reclaimed" not in kinds and "run.resumed" not in kinds, (run_id, kinds)
        assert kinds.count("run.succeeded") == 1, (run_id, kinds)
        workers[run_id] = run.worker
    api_runs, worker_runs = run_ids[2:], run_ids[:2]
    assert all(workers[r].startswith("api:") for r in api_runs), workers
    assert not any(workers[r].startswith("api:") for r in worker_runs), workers
    assert len({workers[r] for r in api_runs}) == 2, f"each server ran the run queued through it: {workers}"
    answered = sum(b["answered"] for b in bodies.values())
    assert answered == sum(r.calls_made for r in runs.values())
    assert all(b["failed"] == 0 and b["abandoned"] == 0 for b in bodies.values())
