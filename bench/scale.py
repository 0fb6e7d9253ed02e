"""Scale benchmark: synthetic calls over 30 days and 50 prompt versions, through the files connector,
on SQLite and PostgreSQL; prints JSON {"sqlite": {...}, "postgresql": {...}}.

    python -m bench.scale [--calls 10000000] [--days 30] [--versions 50] [--backends sqlite,postgresql]

Per backend: `records_per_s` (sync of the JSONL store, aggregates and reservoir included; `ingest_cpu_s`
is the process's CPU time in it, steadier than wall time on a shared machine),
`peak_rss_mb` (the sync process at the end of the sync; `peak_rss_after_mb` has its peak after each
later phase too), `db_mb`, `report_p50_ms` / `report_p99_ms` (the savings report and
the finance dashboard's spend series, called in-process by `--clients` threads), `dataset_build_s`
(one version's dataset from its reservoir), `db_tables_mb` (the largest tables, indexes included, when
`db_mb` is read), `retention_sweep_s` (a sweep with retention_days = a third
of the span) and `longest_write_lock_ms` (the longest write transaction, ingest or sweep).
Each backend runs in its own process, so peak RSS is that backend's alone. The price catalog
(litellm's map) is loaded before the clock starts, as `trimloop serve` does before it listens; its
load time is `price_catalog_load_s`.

`--via receiver` sends the same calls as OTLP GenAI spans (`--span-batch` spans per gzipped protobuf
request, `--receiver-clients` concurrent clients) to a `trimloop serve --no-scheduler` on the
backend's database, its prompts synced first; `records_per_s` runs from the first request to the
last answer (a batch is answered once committed) and `peak_rss_mb` is the server's. Spans carry no
cost or feedback: the receiver prices them from their tokens. The requests are encoded before the
clock starts and held in memory (~150 B a span), so keep `--calls` to a few million.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench._util import machine

PG_ADMIN_URL = os.environ.get("TRIMLOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PROMPT = """---
model: gpt-4o-mini
params: {{temperature: 0, max_tokens: 8}}
labels: [production]
---
system:
You sort support tickets into billing, bug or other ({n}).

user:
Ticket: {{{{ticket}}}}
"""
LABELS = ("billing", "bug", "other")


def write_store(root: Path, calls: int, days: int, versions: int, seed: int = 0) -> Path:
    """A files-connector folder: `versions` prompts with one version each, `calls` calls in time order
    over the last `days` days (streamed to disk)."""
    from trimloop.core.tables import utcnow

    for v in range(versions):
        folder = root / "prompts" / f"p{v:02d}"
        folder.mkdir(parents=True)
        (folder / "1.md").write_text(PROMPT.format(n=v), encoding="utf-8")
    (root / "logs").mkdir()
    if calls == 0:
        return root
    rng = random.Random(seed)
    start = utcnow() - timedelta(days=days)
    step = days * 86400 / calls
    with (root / "logs" / "calls.jsonl").open("w", encoding="utf-8") as out:
        for i in range(calls):
            at = start + timedelta(seconds=i * step)
            tokens = 40 + i % 17
            record = {"id": f"c{i:09d}", "prompt": f"p{i % versions:02d}", "version": "1",
                      "inputs": {"ticket": f"My card was charged twice for order {i}, please help"},
                      "output": LABELS[i % 3], "model": "gpt-4o-mini", "input_tokens": tokens, "output_tokens": 1,
                      "cost": tokens * 1.5e-7, "latency_s": round(rng.uniform(0.2, 2.0), 3),
                      "called_at": at.isoformat().replace("+00:00", "Z"),
                      "feedback": [{"name": "thumbs_up", "value": i % 2, "source": "user"}] if i % 50 == 0 else []}
            out.write(json.dumps(record) + "\n")
    return root


def span_batches(calls: int, days: int, versions: int, size: int) -> list[bytes]:
    """The calls `write_store` writes, as gzipped OTLP protobuf requests of `size` GenAI spans each
    (same ids, times, prompts, tokens and latencies)."""
    import gzip

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    from trimloop.core.tables import utcnow

    def kv(key: str, value: object) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value))

    rng = random.Random(0)
    start_ns = int((utcnow() - timedelta(days=days)).timestamp() * 1e9)
    step_ns = days * 86400 * 10**9 // calls
    out = []
    for first in range(0, calls, size):
        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        for i in range(first, min(first + size, calls)):
            at = start_ns + i * step_ns
            latency_ns = int(round(rng.uniform(0.2, 2.0), 3) * 1e9)
            span = scope.spans.add(trace_id=(i + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"),
                                   name="chat gpt-4o-mini", start_time_unix_nano=at, end_time_unix_nano=at + latency_ns)
            span.attributes.extend([
                kv("gen_ai.operation.name", "chat"), kv("gen_ai.request.model", "gpt-4o-mini"),
                kv("gen_ai.response.model", "gpt-4o-mini"), kv("trimloop.prompt", f"p{i % versions:02d}"),
                kv("trimloop.prompt.version", "1"),
                kv("trimloop.inputs", json.dumps({"ticket": f"My card was charged twice for order {i}, please help"})),
                kv("gen_ai.completion.0.role", "assistant"), kv("gen_ai.completion.0.content", LABELS[i % 3]),
                kv("gen_ai.usage.input_tokens", 40 + i % 17), kv("gen_ai.usage.output_tokens", 1)])
        out.append(gzip.compress(request.SerializeToString()))
    return out


def via_receiver(url: str, engine: Any, store: Path, tmp: Path, args: argparse.Namespace) -> tuple[float, float]:
    """Push the calls as spans to a `trimloop serve` on `url`: (seconds from the first request to the
    last answer, the server's peak RSS in MB)."""
    import signal

    from bench.otlp import _peak_rss_kb, _push, _wait_healthy
    from trimloop.connectors.files import FilesConnector
    from trimloop.connectors.sync import sync_connector
    from trimloop.core import store as records
    from trimloop.core.db import session_scope
    from trimloop.testing.fake_openai import free_port

    (store / "no-logs").mkdir(exist_ok=True)  # the prompts only: the calls go through the receiver
    prompts = FilesConnector(name="bench", options={"path": str(store), "logs_dir": "no-logs"})
    sync_connector(engine=engine, connector=prompts)
    with session_scope(engine) as session:
        _, token = records.create_token(session=session, name="bench", role="ingest", actor="bench")
    bodies = span_batches(args.calls, args.days, args.versions, args.span_batch)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMLOOP_")}
    env.update(TRIMLOOP_HOME=str(tmp / "home"), TRIMLOOP_DATABASE_URL=url, TRIMLOOP_API__PORT=str(port),
               TRIMLOOP_RESERVOIR__PER_DAY=str(args.per_day),
               TRIMLOOP_RESERVOIR__HEADROOM=str(args.headroom))
    server = subprocess.Popen([sys.executable, "-c", "from trimloop.api.cli import main; main()", "serve",
                               "--no-scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, server)
        pushed = _push(base, token, bodies, args.receiver_clients)
        peak_kb = _peak_rss_kb(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    return pushed["seconds"], peak_kb / 1024


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_backend(backend: str, store: Path, args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import event, text

    from trimloop.api.reporting import savings_report
    from trimloop.api.ui.views import spend_series
    from trimloop.connectors.files import FilesConnector
    from trimloop.connectors.sync import sync_connector
    from trimloop.core import reservoir
    from trimloop.core.catalog import import_litellm
    from trimloop.core.db import make_engine, session_scope, upgrade
    from trimloop.core.settings import Settings
    from trimloop.core.tables import PromptVersion, utcnow
    from trimloop.evals.datasets import build_from_logs

    with tempfile.TemporaryDirectory(prefix="trimloop-scale-") as tmp:
        if backend == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'scale.db'}"
            drop = None
        else:
            import psycopg

            name = f"trimloop_scale_{os.getpid()}"
            admin = PG_ADMIN_URL.replace("+psycopg", "")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            drop = (admin, name)
        try:
            upgrade(url)
            engine = make_engine(url)
            longest = {"ingest": 0.0, "read": 0.0, "sweep": 0.0}
            phase = {"now": "ingest"}
            started: dict[int, float] = {}

            @event.listens_for(engine, "begin")
            def _begin(conn: Any) -> None:
                started[id(conn)] = time.perf_counter()

            @event.listens_for(engine, "commit")
            def _commit(conn: Any) -> None:
                t0 = started.pop(id(conn), None)
                if t0 is not None:
                    longest[phase["now"]] = max(longest[phase["now"]], (time.perf_counter() - t0) * 1000)

            settings = Settings(reservoir={"per_day": args.per_day, "headroom": args.headroom})
            t0 = time.perf_counter()
            import_litellm()  # the price catalog: loaded once per process, before any ingest
            catalog_s = time.perf_counter() - t0
            ingest_cpu_s = None  # through the receiver the CPU is the server's
            if args.via == "receiver":
                ingest_s, rss = via_receiver(url, engine, store, Path(tmp), args)
                with engine.connect() as conn:
                    ingested = conn.execute(text("select count(*) from logseen")).scalar()
                if ingested != args.calls:
                    raise SystemExit(f"{backend}: the receiver stored {ingested} of {args.calls} spans")
            else:
                connector = FilesConnector(name="bench", options={"path": str(store)})
                t0, cpu0 = time.perf_counter(), time.process_time()
                batch = {"batch_size": args.batch_size} if args.batch_size else {}
                report = sync_connector(engine=engine, connector=connector, settings=settings, **batch)
                ingest_s, ingest_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
                if report.fatal or report.logs_added != args.calls:
                    raise SystemExit(f"{backend}: sync added {report.logs_added} of {args.calls}: {report.to_dict()}")
                rss = _peak_rss_mb()
            after = {"ingest": rss}
            phase["now"] = "read"
            latencies: list[float] = []
            lock = threading.Lock()
            today = utcnow().date()

            def client(k: int) -> None:
                for r in range(args.requests):
                    t = time.perf_counter()
                    with session_scope(engine) as session:
                        if (k + r) % 2:
                            savings_report(session, 30)
                        else:
                            spend_series(session, today - timedelta(days=29), today)
                    with lock:
                        latencies.append((time.perf_counter() - t) * 1000)

            threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            after["reports"] = _peak_rss_mb()
            with session_scope(engine) as session:
                version = session.get(PromptVersion, 1)
                t0 = time.perf_counter()
                build_from_logs(session, prompt_id=version.prompt_id, version_id=version.id, size=500)  # type: ignore[union-attr]
                dataset_s = time.perf_counter() - t0
            after["dataset"] = _peak_rss_mb()
            autovacuum = None
            if backend == "sqlite":
                size = sum(p.stat().st_size for p in Path(tmp).glob("scale.db*"))
            else:
                with engine.connect() as conn:
                    size = conn.execute(text("select pg_database_size(current_database())")).scalar()
                    # off, dead rows (trimmed records, rewritten aggregates) are never reclaimed: db_mb grows
                    autovacuum = conn.execute(text("show autovacuum")).scalar()
            tables = table_sizes_mb(engine, backend)
            phase["now"] = "sweep"
            policy = reservoir.Policy(per_day=args.per_day, retention_days=max(1, args.days * 2 // 3),
                                      sweep_batch=settings.reservoir.sweep_batch)
            swept = reservoir.sweep(engine, policy=policy)
            after["sweep"] = _peak_rss_mb()
            with engine.connect() as conn:
                stored = conn.execute(text("select count(*) from logrecord")).scalar()
            engine.dispose()
        finally:
            if drop is not None:
                import psycopg

                with psycopg.connect(drop[0], autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {drop[1]} WITH (FORCE)")
    return {
        "via": args.via, "calls": args.calls, "headroom": args.headroom, "records_per_s": round(args.calls / ingest_s),
        "ingest_s": round(ingest_s, 1), "ingest_cpu_s": None if ingest_cpu_s is None else round(ingest_cpu_s, 1),
        "price_catalog_load_s": round(catalog_s, 1), "peak_rss_mb": round(rss, 1), "db_mb": round(size / 2**20, 1),
        "db_tables_mb": tables, "pg_autovacuum": autovacuum,
        # this process's peak RSS after each phase (through the receiver, "ingest" is the server's)
        "peak_rss_after_mb": {name: round(mb, 1) for name, mb in after.items()},
        "report_p50_ms": round(_pct(latencies, 0.5), 1), "report_p99_ms": round(_pct(latencies, 0.99), 1),
        "report_requests": len(latencies), "dataset_build_s": round(dataset_s, 2),
        "retention_sweep_s": round(swept.seconds, 2), "records_swept": swept.records_deleted,
        "full_records_left": stored,
        # through the receiver the ingest transactions are the server's: not timed here
        "longest_write_lock_ms": round(max(longest["ingest"] if args.via == "files" else 0, longest["sweep"]), 1),
        "longest_ingest_batch_ms": round(longest["ingest"], 1) if args.via == "files" else None,
        "longest_sweep_write_ms": round(longest["sweep"], 1),
    }


def table_sizes_mb(engine: Any, backend: str, top: int = 6) -> dict[str, float] | None:
    """The largest tables with their indexes (and TOAST on PostgreSQL), in MB, largest first; None where
    SQLite was built without the dbstat table."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    if backend == "sqlite":
        query = ("select coalesce(m.tbl_name, d.name), sum(d.pgsize) from dbstat d "
                 "left join sqlite_master m on m.name = d.name group by 1")
    else:
        query = ("select c.relname, pg_total_relation_size(c.oid) from pg_class c "
                 "join pg_namespace n on n.oid = c.relnamespace "
                 "where c.relkind = 'r' and n.nspname = current_schema()")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(query)).all()
    except OperationalError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB: "no such table: dbstat"
        return None
    rows.sort(key=lambda row: -row[1])
    return {name: round(size / 2**20, 1) for name, size in rows[:top]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--per-day", type=int, default=2000, help="reservoir: full records per version per day")
    parser.add_argument("--headroom", type=float, default=1.5,
                        help="reservoir.headroom: 0 writes every record the reservoir may keep, then trims")
    parser.add_argument("--batch-size", type=int, help="records per sync transaction (default: the sync's own)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10, help="report requests per client")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--via", choices=("files", "receiver"), default="files",
                        help="ingest through the files connector, or as OTLP spans through a running trimloop serve")
    parser.add_argument("--span-batch", type=int, default=1000, help="--via receiver: spans per request")
    parser.add_argument("--receiver-clients", type=int, default=4, help="--via receiver: concurrent exporters")
    parser.add_argument("--store", help=argparse.SUPPRESS)  # a child process: run one backend on this store
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend:
        result = run_backend(args.backend, Path(args.store), args)
        print(json.dumps(result))
        return result
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="trimloop-scale-store-") as tmp:
        t0 = time.perf_counter()
        # through the receiver the calls are sent as spans: the store holds the prompts only
        store = write_store(Path(tmp) / "store", args.calls if args.via == "files" else 0, args.days, args.versions)
        generate_s = time.perf_counter() - t0
        passed = [a for a in (argv if argv is not None else sys.argv[1:])]
        for backend in args.backends.split(","):
            child = subprocess.run([sys.executable, "-m", "bench.scale", *passed, "--backend", backend,
                                    "--store", str(store)], capture_output=True, text=True)
            if child.returncode != 0:
                out[backend] = {"error": (child.stderr or child.stdout)[-2000:]}
            else:
                out[backend] = json.loads(child.stdout.strip().splitlines()[-1])
    out["generate_s"] = round(generate_s, 1)
    out["machine"] = machine()
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
