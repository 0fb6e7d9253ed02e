"""API benchmark: the suggestion list (with filters) and the savings report under concurrent load.

    python -m bench.api [--suggestions 1000] [--logs 100000] [--seconds 30] [--concurrency 16]

Seeds a temporary SQLite database (SQLAlchemy Core bulk inserts) with prompts, versions,
`--suggestions` suggestions with realistic evidence (pending, approved, rejected, superseded,
deployed with promote/rollback rows) and `--logs` log records over the last 60 days; starts `trimloop
serve --no-scheduler` (what users run) on a free loopback port; then `--concurrency` clients (httpx) with a
viewer token request, round-robin, `/suggestions?status=pending&min_savings=…`,
`/suggestions?prompt_id=…`, `/reports/savings` and `/reports/savings?format=csv` for `--seconds`.
Then a burst: `--burst` clients (100) at once, each `--burst-requests` GET /prompts and
/suggestions?prompt_id=… back to back, while another process asks for `/health` every 20 ms (a
new connection each time, as a load balancer's check).
Prints JSON: p50 / p99 latency per endpoint, requests per second, errors; for the burst the count
of 500s (must be 0), of 503s and whether each carried Retry-After, and `/health`'s p99 during it
(target < 100 ms); the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from bench._util import machine
from trimloop.core import store, traffic
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.core.tables import Deployment, LogRecord, Prompt, PromptLabel, PromptVersion, Suggestion, utcnow
from trimloop.testing.fake_openai import free_port

PROMPTS = 50
# idle connections are dropped before the server's 5 s keep-alive closes them: at httpx's default (5 s,
# the same) a request could be sent on a connection the server was closing and fail with ReadError
KEEPALIVE_S = 2.0
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-haiku", "local/gemma3-270m")
STATUSES = (("pending", 0.55), ("approved", 0.1), ("rejected", 0.1), ("superseded", 0.1),
            ("deployed", 0.1), ("rolled_back", 0.05))
BATCH = 5000


def _evidence(rng: random.Random, savings: float) -> dict[str, Any]:
    """Roughly what the optimizer records: certification per evaluator, racing, dataset, savings."""
    evaluators = {name: {"n": 120, "mean_baseline": round(rng.uniform(0.8, 0.95), 4),
                         "mean_candidate": round(rng.uniform(0.8, 0.95), 4), "diff": round(rng.uniform(-0.02, 0.02), 4),
                         "lower": round(rng.uniform(-0.03, 0.0), 4), "upper": round(rng.uniform(0.0, 0.04), 4),
                         "margin": 0.02, "method": "tango", "p_value": round(rng.uniform(0, 0.05), 5),
                         "verdict": "pass"} for name in ("exact_match", "json_valid", "label_f1")}
    racing = [{"rung": rung, "alive": [f"cand-{i}" for i in range(rng.randint(1, 6))],
               "eliminated": [{"candidate": f"cand-{i}", "reason": "futility bound"} for i in range(rng.randint(0, 4))]}
              for rung in (8, 24, 72)]
    return {"holdout_n": 120, "search_n": 200, "evaluators": evaluators, "racing": racing,
            "dataset": {"id": rng.randint(1, 500), "content_hash": f"{rng.getrandbits(128):032x}",
                        "strata": {"billing": 70, "bug": 80, "other": 50}},
            "savings": {"calls_per_day": round(rng.uniform(100, 50000), 1), "window_days": 28,
                        "baseline_cost_per_call": 0.002, "candidate_cost_per_call": 0.001, "cost_ratio": 0.5,
                        "monthly": savings, "monthly_low": savings * 0.8, "monthly_high": savings * 1.2,
                        "optimization_spend": 0.5},
            "moves": [{"move": "shorten", "removed_chars": rng.randint(50, 2000)},
                      {"move": "retarget", "from": "gpt-4o", "to": "gpt-4o-mini"}],
            "examples": [{"input": f"ticket text {i} " * 8, "baseline": "billing", "candidate": "billing"}
                         for i in range(10)]}


def seed(url: str, *, suggestions: int, logs: int, seed_: int = 7) -> str:
    """Fill the database; returns a viewer token."""
    rng = random.Random(seed_)
    now = utcnow()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Prompt), [{"name": f"prompt-{p:03d}", "connector": "local", "config": {},
                                       "created_at": now - timedelta(days=90)} for p in range(1, PROMPTS + 1)])
        baselines = [{"prompt_id": p, "sha": f"base{p:060d}", "template": {"kind": "text", "text": "x" * 400},
                      "model": rng.choice(MODELS[:3]), "params": {"temperature": 0}, "connector": "local",
                      "created_at": now - timedelta(days=90)} for p in range(1, PROMPTS + 1)]
        conn.execute(insert(PromptVersion), baselines)  # ids 1..PROMPTS
        conn.execute(insert(PromptLabel), [{"prompt_id": p, "label": "production", "version_id": p,
                                            "moved_at": now - timedelta(days=90)} for p in range(1, PROMPTS + 1)])
        candidates = [{"prompt_id": 1 + i % PROMPTS, "sha": f"cand{i:060d}",
                       "template": {"kind": "text", "text": "y" * 200}, "model": rng.choice(MODELS),
                       "params": {"temperature": 0}, "connector": "trimloop",
                       "created_at": now - timedelta(days=rng.uniform(0, 60))} for i in range(suggestions)]
        conn.execute(insert(PromptVersion), candidates)  # ids PROMPTS+1..PROMPTS+suggestions
        rows, deployments = [], []
        for i in range(suggestions):
            status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
            savings = round(rng.lognormvariate(4, 1.5), 2)
            created = now - timedelta(days=rng.uniform(1, 60))
            rows.append({"prompt_id": 1 + i % PROMPTS, "baseline_version_id": 1 + i % PROMPTS,
                         "candidate_version_id": PROMPTS + 1 + i, "candidate_sha": f"cand{i:060d}", "status": status,
                         "evidence": _evidence(rng, savings), "baseline_cost_per_call": 0.002,
                         "candidate_cost_per_call": 0.001, "baseline_latency_p50_s": 0.8,
                         "candidate_latency_p50_s": 0.5, "projected_monthly_savings": savings,
                         "savings_low": savings * 0.8, "savings_high": savings * 1.2,
                         "optimization_spend": round(rng.uniform(0.1, 5), 2), "payback_days": 1.5,
                         "reason": "quality dropped on long tickets" if status == "rejected" else None,
                         "created_at": created})
            if status in ("deployed", "rolled_back"):
                for action, days in (("deploy", 0), ("promote", 1)) + ((("rollback", 10),) if status == "rolled_back" else ()):
                    deployments.append({"suggestion_id": i + 1, "connector": "local", "label": "production",
                                        "action": action, "status": "done", "actor": "bench",
                                        "created_at": created + timedelta(days=days)})
        conn.execute(insert(Suggestion), rows)  # ids 1..suggestions
        if deployments:
            conn.execute(insert(Deployment), deployments)
        batch = []
        for i in range(logs):
            p = 1 + rng.randrange(PROMPTS)
            version = p if rng.random() < 0.8 else PROMPTS + 1 + rng.randrange(suggestions)
            tokens_in = rng.randint(100, 2000)
            batch.append({"connector": "local", "external_id": f"log-{i}", "prompt_id": p, "version_id": version,
                          "inputs": {"ticket": f"my invoice {i} was charged twice, please help"},
                          "output": rng.choice(("billing", "bug", "other")), "model": rng.choice(MODELS),
                          "input_tokens": tokens_in, "output_tokens": rng.randint(1, 50),
                          "cost": tokens_in * 1.5e-7, "latency_s": round(rng.uniform(0.2, 2.0), 3),
                          "called_at": now - timedelta(seconds=rng.uniform(0, 60 * 86400)),
                          "feedback": [{"name": "expected", "value": "billing", "source": "reviewer"}]
                          if rng.random() < 0.3 else [], "meta": {"trace_id": f"{rng.getrandbits(64):016x}"}})
            if len(batch) == BATCH:
                conn.execute(insert(LogRecord), batch)
                batch = []
        if batch:
            conn.execute(insert(LogRecord), batch)
        traffic.rebuild(conn)  # bulk inserts past sync: aggregate them as migration 0010 does
    with session_scope(engine) as session:
        _, clear = store.create_token(session=session, name="bench", role="viewer", actor="bench")
    engine.dispose()
    return clear


def endpoints(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(group, path) pairs, filters varied."""
    out = []
    for _ in range(n):
        out.append(("suggestions", f"/suggestions?status=pending&min_savings={rng.choice((0, 10, 50, 100, 500))}"))
        out.append(("suggestions", f"/suggestions?prompt_id={1 + rng.randrange(PROMPTS)}"))
        out.append(("savings", "/reports/savings"))
        out.append(("savings_csv", "/reports/savings?format=csv"))
    return out


async def load(url: str, token: str, *, seconds: float, concurrency: int) -> dict[str, Any]:
    rng = random.Random(1)
    plan = endpoints(rng, 64)
    latencies: dict[str, list[float]] = {"suggestions": [], "savings": [], "savings_csv": []}
    errors: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency, keepalive_expiry=KEEPALIVE_S)) as client:
        for _, path in plan[:4]:  # warm up
            (await client.get(path)).raise_for_status()
        deadline = time.monotonic() + seconds
        counter = iter(range(10**9))

        async def one_client() -> None:
            while time.monotonic() < deadline:
                group, path = plan[next(counter) % len(plan)]
                start = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = response.status_code == 200
                    key = str(response.status_code)
                except httpx.HTTPError as exc:
                    ok, key = False, exc.__class__.__name__
                if ok:
                    latencies[group].append(time.perf_counter() - start)
                else:
                    errors[key] = errors.get(key, 0) + 1

        began = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    out: dict[str, Any] = {}
    for group, values in latencies.items():
        values.sort()
        out[f"{group}_requests"] = len(values)
        out[f"{group}_p50_ms"] = round(statistics.median(values) * 1000, 1) if values else None
        out[f"{group}_p99_ms"] = round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 1) if values else None
    total = sum(len(v) for v in latencies.values())
    out.update(requests=total, requests_per_s=round(total / elapsed, 1), seconds=round(elapsed, 1),
               errors=sum(errors.values()), error_kinds=errors)
    return out


PROBE = """
import http.client, json, sys, threading, time
host, port = sys.argv[1].split("//")[1].split(":")
latencies, failures, stop = [], 0, threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("ready", flush=True)
while not stop.is_set():
    began = time.perf_counter()
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("GET", "/health")
        ok = conn.getresponse().status == 200
        conn.close()
    except OSError:
        ok = False
    if ok:
        latencies.append(time.perf_counter() - began)
    else:
        failures += 1
    time.sleep(0.02)
print(json.dumps({"latencies": latencies, "failures": failures}))
"""


def _p(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))] * 1000, 1) if values else None


async def burst(url: str, token: str, *, clients: int, requests_each: int) -> dict[str, Any]:
    """`clients` at once (a connection each), and `/health` asked every 20 ms until they finish."""
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    without_retry_after = 0
    # /health is timed from another process, so the 100 clients' own work does not delay its clock
    prober = subprocess.Popen([sys.executable, "-c", PROBE, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert prober.stdout is not None and prober.stdin is not None
    prober.stdout.readline()  # "ready"
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120,
                                 limits=httpx.Limits(max_connections=clients, keepalive_expiry=KEEPALIVE_S)) as client:

        async def one_client(i: int) -> None:
            nonlocal without_retry_after
            for j in range(requests_each):
                path = "/prompts" if j % 2 == 0 else f"/suggestions?prompt_id={1 + (i + j) % PROMPTS}"
                start = time.perf_counter()
                try:
                    response = await client.get(path)
                    key = str(response.status_code)
                    if response.status_code == 503 and "retry-after" not in response.headers:
                        without_retry_after += 1
                except httpx.HTTPError as exc:
                    key = exc.__class__.__name__
                latencies.append(time.perf_counter() - start)
                statuses[key] = statuses.get(key, 0) + 1

        began = time.monotonic()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        elapsed = time.monotonic() - began
    prober.stdin.close()  # stop
    probed = json.loads(prober.stdout.read())
    prober.wait(timeout=30)
    health, health_failures = probed["latencies"], probed["failures"]
    return {"burst_clients": clients, "burst_requests": sum(statuses.values()), "burst_seconds": round(elapsed, 1),
            "burst_statuses": statuses, "burst_500s": statuses.get("500", 0), "burst_503s": statuses.get("503", 0),
            "burst_every_503_has_retry_after": without_retry_after == 0,
            "burst_p50_ms": _p(latencies, 0.5), "burst_p99_ms": _p(latencies, 0.99),
            "health_during_burst_n": len(health), "health_during_burst_failures": health_failures,
            "health_during_burst_p50_ms": _p(health, 0.5), "health_during_burst_p99_ms": _p(health, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suggestions", type=int, default=1000)
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--burst", type=int, default=100, help="clients at once after the load (0: no burst)")
    parser.add_argument("--burst-requests", type=int, default=4, help="requests per burst client")
    parser.add_argument("--turns", type=int, default=None, help="the server's api.concurrent_requests (default: its own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trimloop-bench-api-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        began = time.perf_counter()
        token = seed(url, suggestions=args.suggestions, logs=args.logs)
        seed_s = time.perf_counter() - began
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMLOOP_")}
        env.update(TRIMLOOP_DATABASE_URL=url, TRIMLOOP_HOME=str(Path(tmp) / "home"),
                   TRIMLOOP_CONFIG=str(Path(tmp) / "none.toml"))
        if args.turns:
            env["TRIMLOOP_API__CONCURRENT_REQUESTS"] = str(args.turns)
        # the server's log goes to a file: a pipe nobody reads fills up and blocks the server mid-burst
        server_log = Path(tmp) / "server.log"
        with server_log.open("wb") as log:
            server = subprocess.Popen(
                # what users run: `trimloop serve` (its uvicorn limits and process settings), no scheduler
                [sys.executable, "-c", "from trimloop.api.cli import main; main()", "serve", "--no-scheduler",
                 "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if server.poll() is not None:
                    raise SystemExit(f"server exited: {server_log.read_text(errors='replace')[-2000:]}")
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            result = asyncio.run(load(base, token, seconds=args.seconds, concurrency=args.concurrency))
            if args.burst:
                result.update(asyncio.run(burst(base, token, clients=args.burst, requests_each=args.burst_requests)))
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
        logged = server_log.read_text(errors="replace")
        result["server_log_lines"] = {"warnings": logged.count(" WARNING") + logged.count("WARNING:"),
                                      "tracebacks": logged.count("Traceback (most recent call last)")}
    print(json.dumps({"suggestions_in_store": args.suggestions, "logs_in_store": args.logs,
                      "concurrency": args.concurrency, "turns": args.turns or "default", "seed_s": round(seed_s, 1), **result,
                      "load_avg_1m": round(os.getloadavg()[0], 2), "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
