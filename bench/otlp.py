"""OTLP receiver benchmark: GenAI spans pushed to a real `trimloop serve` at `POST /v1/traces`
(protobuf, gzip, an ingest token) by `--clients` concurrent clients; prints JSON.

    python -m bench.otlp [--spans 20000] [--batch 500] [--clients 4] [--servers 1] [--db-url URL]

Reports `spans_per_s` (from the first request to the last answer, every span stored, counted in
the database afterwards), `batch_p50_ms`/`batch_p99_ms` (one export request, queue wait
included), `rejected_429` (batches answered 429 and sent again after Retry-After, as the OTLP
exporters do) and the server's peak RSS. Batches are encoded before the clock starts: this
measures the receiver, not the client. One span is sent first, unclocked: the server's first
request loads the price catalog (litellm's import, seconds).

`--servers N` starts N `serve` processes on the one database (scale-out: use PostgreSQL) and
splits the batches and the clients evenly over them; `spans_per_s` is then over all of them, and
`batch_p50_ms`/`batch_p99_ms` the worst server's. `aggregated_spans` is what the traffic
aggregates counted (records kept + dropped by the reservoir): it must equal `--spans`.
`server_cpu_s` is the servers' CPU time (start-up included), for machines shared with other work.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from trimloop.connectors.files import FilesConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core import store
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.testing.fake_openai import free_port

PROMPT = """---
model: gpt-4o-mini
params: {temperature: 0, max_tokens: 8}
labels: [production]
---
system:
You sort support tickets into billing, bug or other.

user:
Ticket: {{ticket}}
"""


def batches(spans: int, size: int, first_id: int = 1) -> list[bytes]:
    """Gzipped protobuf ExportTraceServiceRequests of GenAI chat spans, each in a trace of its own."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def kv(key: str, value: object) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value))

    out = []
    start = 1_750_000_000_000_000_000
    for first in range(0, spans, size):
        request = ExportTraceServiceRequest()
        scope = request.resource_spans.add().scope_spans.add()
        for i in range(first, min(first + size, spans)):
            span = scope.spans.add(trace_id=(i + first_id).to_bytes(16, "big"), span_id=(i + first_id).to_bytes(8, "big"),
                                   name="chat gpt-4o-mini", start_time_unix_nano=start + i * 1_000_000,
                                   end_time_unix_nano=start + i * 1_000_000 + 350_000_000 + i % 97 * 1_000_000)
            span.attributes.extend([
                kv("gen_ai.operation.name", "chat"), kv("gen_ai.request.model", "gpt-4o-mini"),
                kv("gen_ai.response.model", "gpt-4o-mini"), kv("trimloop.prompt", "triage"),
                kv("trimloop.prompt.version", "1"),
                kv("trimloop.inputs", json.dumps({"ticket": f"My card was charged twice for order {i}"})),
                kv("gen_ai.usage.input_tokens", 40 + i % 17), kv("gen_ai.usage.output_tokens", 1)])
        out.append(gzip.compress(request.SerializeToString()))
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--servers", type=int, default=1, help="serve processes on the one database")
    parser.add_argument("--db-url", default=None, help="an empty database (default: SQLite in a temp folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trimloop-otlp-") as tmp:
        root = Path(tmp)
        url = args.db_url or f"sqlite:///{root / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        (root / "store" / "prompts" / "triage").mkdir(parents=True)
        (root / "store" / "prompts" / "triage" / "1.md").write_text(PROMPT, encoding="utf-8")
        sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(root / "store")}))
        with session_scope(engine) as session:
            _, token = store.create_token(session=session, name="bench", role="ingest", actor="bench")
        servers, bases = [], []
        for _ in range(args.servers):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMLOOP_")}
            env.update(TRIMLOOP_HOME=str(root / "home"), TRIMLOOP_DATABASE_URL=url, TRIMLOOP_API__PORT=str(port))
            servers.append(subprocess.Popen([sys.executable, "-c", "from trimloop.api.cli import main; main()", "serve", "--no-scheduler"], env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            bases.append(f"http://127.0.0.1:{port}")
        try:
            for base, server in zip(bases, servers):
                _wait_healthy(base, server)
            bodies = batches(args.spans, args.batch)
            for n, base in enumerate(bases):
                warm = httpx.post(f"{base}/v1/traces", content=batches(1, 1, first_id=args.spans + 1 + n)[0], timeout=120,
                                  headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-protobuf",
                                           "Content-Encoding": "gzip"})  # the first request loads the price catalog
                warm.raise_for_status()
            if len(bases) == 1:
                result = _push(bases[0], token, bodies, args.clients)
            else:
                result = _push_spread(bases, token, bodies, args.clients)
            peak_kb = sum(_peak_rss_kb(server.pid) for server in servers)
            cpu_s = sum(_cpu_s(server.pid) for server in servers)
        finally:
            for server in servers:
                server.send_signal(signal.SIGINT)
            for server in servers:
                server.wait(timeout=60)
        warmups = len(bases)
        with engine.connect() as conn:
            stored = conn.execute(text("select count(*) from logrecord where connector = 'otlp'")).scalar() - warmups
            counted = conn.execute(text("select coalesce(sum(records), 0) from trafficaggregate")).scalar() - warmups
        engine.dispose()
    if counted != args.spans:
        print(json.dumps({"error": f"{counted} of {args.spans} spans counted in the aggregates"}), file=sys.stderr)
        raise SystemExit(1)
    out = {"backend": url.split(":", 1)[0], "spans": args.spans, "batch": args.batch, "clients": args.clients,
           "servers": args.servers, **result, "spans_per_s": round(args.spans / result["seconds"]),
           "aggregated_spans": int(counted), "stored_records": int(stored),
           "server_peak_rss_mb": round(peak_kb / 1024, 1), "server_cpu_s": round(cpu_s, 1)}
    print(json.dumps(out))
    return out


def _push(base: str, token: str, bodies: list[bytes], clients: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-protobuf",
               "Content-Encoding": "gzip"}
    todo = list(reversed(bodies))
    lock = threading.Lock()
    times: list[float] = []
    rejected = 0

    def client() -> None:
        nonlocal rejected
        with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    body = todo.pop()
                while True:
                    began = time.perf_counter()
                    reply = http.post("/v1/traces", content=body)
                    if reply.status_code != 429:
                        break
                    with lock:
                        rejected += 1
                    time.sleep(float(reply.headers.get("Retry-After", "1")))  # what an exporter does
                reply.raise_for_status()
                with lock:
                    times.append(time.perf_counter() - began)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    times.sort()
    return {"seconds": round(seconds, 2), "batch_p50_ms": round(statistics.median(times) * 1000, 1),
            "batch_p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 1),
            "rejected_429": rejected}


def _push_spread(bases: list[str], token: str, bodies: list[bytes], clients: int) -> dict[str, float]:
    """`_push` to every server at once, each with its share of the batches and the clients."""
    results: list[dict[str, float]] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        share = _push(bases[n], token, bodies[n::len(bases)], max(1, clients // len(bases)))
        with lock:
            results.append(share)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(bases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(results) != len(bases):
        raise SystemExit("a server's clients failed (see the error above)")
    return {"seconds": round(time.perf_counter() - started, 2),
            "batch_p50_ms": max(r["batch_p50_ms"] for r in results),
            "batch_p99_ms": max(r["batch_p99_ms"] for r in results),
            "rejected_429": sum(r["rejected_429"] for r in results)}


def _wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"trimloop serve exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("trimloop serve did not become healthy in 60 s")


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far: on a shared machine, spans per CPU
    second say more about scale-out than spans per wall second."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
