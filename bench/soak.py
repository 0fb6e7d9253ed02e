"""Soak: `trimloop serve` under mixed read/write load for minutes while optimization runs execute; prints JSON.

    python -m bench.soak [--seconds 300] [--clients 6] [--suggestions 1000] [--logs 100000] [--latency-ms 200]

Setup (in a temporary folder, nothing left behind):
- a SQLite store seeded like bench/api.py (`--suggestions` suggestions, `--logs` logs over 60 days), plus a
  files prompt store with two prompts, `sentiment` and `sentiment-b`, on `fake/big` with 200 logs each, synced;
- the fake OpenAI-compatible server (trimloop.testing.fake_openai) with `--latency-ms` per call, serving
  `fake/big` and the cheaper `fake/small`, answering every review with its gold label (so a cheaper
  candidate can be certified);
- the API through the real CLI, `trimloop serve --no-scheduler` (the scheduler would start runs of its own);
- a worker on the same database: `trimloop optimize sentiment --json` in its own process, started again
  whenever it ends while the soak lasts (later runs answer mostly from the response cache).

Load for `--seconds`, all httpx clients in this process:
- `--clients` readers with a viewer token: suggestion lists (filters), one suggestion, the savings report
  (JSON, sometimes CSV), prompts, a prompt's traffic, runs, audit, health;
- one web UI reader signed in with a cookie session: queue, dashboard, a suggestion page, runs;
- a reviewer approving and rejecting seeded pending suggestions (younger than 25 days, so none expires during
  the soak), one every ~2 s;
- an ingester appending 50 log lines to the files store every ~8 s, then `POST /connectors/sync` (the
  count added must match);
- an engineer starting runs of `sentiment-b` with `POST /runs` (the server runs them), following each with
  `GET /runs/{id}` and its event stream, then starting the next; a run still live at the end is cancelled;
- an admin creating a token every ~30 s, using it, revoking it, and checking that the revoked token and a
  bogus one get 401 (rare enough to stay under the failed-login limit).

Every response must have the status its route expects (200, or 201 / 202 / 401 where that is the point);
anything else, a timeout included, counts as an error. Prints JSON: requests, errors, p50 / p99 / max latency
per route; server and worker RSS at the start, every `--sample-s` seconds and at the end (/proc); the
worker's runs (status, seconds, calls) and the server's; logs appended and synced; the machine and its load.
Exit code 1 when there were errors or no optimization by the worker finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench._util import machine
from trimloop.testing.fake_openai import free_port, running
from trimloop.testing.sentiment import REPLIES, VERBOSE, review

PRICES = {"fake/big": (50.0, 100.0), "fake/small": (5.0, 10.0)}  # $ per 1M input / output tokens
PROMPTS = {"sentiment": "", "sentiment-b": " for film reviews"}  # name → a variant of the text (no shared cache)
RUN_CONFIG = {"rungs": [8, 24], "dataset_size": 200, "holdout_fraction": 0.6, "margin": 0.05,
              "models": ["fake/small"], "concurrency": 2}
CONNECTOR = "store"
CLI = [sys.executable, "-c", "from trimloop.api.cli import main; main()"]


# --- setup -----------------------------------------------------------------------------------------

def log_lines(prompt: str, start: int, n: int, rng: random.Random, at: Any) -> str:
    """`n` files-connector log lines of version 1 of `prompt`; outputs are the gold labels."""
    cost = (160 * PRICES["fake/big"][0] + PRICES["fake/big"][1]) / 1e6
    lines = []
    for i in range(start, start + n):
        text, label = review(rng, i)
        lines.append(json.dumps({
            "id": f"{prompt}-{i}", "prompt": prompt, "version": "1",
            "inputs": {"text": text},
            "output": f" {label}", "model": "fake/big", "input_tokens": 160, "output_tokens": 1, "cost": cost,
            "latency_s": 0.3, "called_at": (at(i - start)).isoformat()}))
    return "\n".join(lines) + "\n"


def write_store(folder: Path, now: Any) -> None:
    rng = random.Random(11)
    (folder / "logs").mkdir(parents=True)
    for name, variant in PROMPTS.items():
        (folder / "prompts" / name).mkdir(parents=True)
        front = json.dumps({"model": "fake/big", "params": {"max_tokens": 3, "temperature": 0},
                            "labels": ["production"]})  # JSON is YAML
        text = VERBOSE.replace("classifier.", f"classifier{variant}.", 1)
        (folder / "prompts" / name / "1.md").write_text(f"---\n{front}\n---\n{text}\n")
        (folder / "logs" / f"{name}-base.jsonl").write_text(
            log_lines(name, 0, 200, rng, lambda k: now - timedelta(days=27) + timedelta(hours=3 * k)))


def settings_env(tmp: Path, url: str, provider: str) -> dict[str, str]:
    """The environment of the server and the worker: settings as TRIMLOOP_* variables (JSON for tables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMLOOP_")}
    env.update(
        TRIMLOOP_DATABASE_URL=url, TRIMLOOP_HOME=str(tmp / "home"), TRIMLOOP_CONFIG=str(tmp / "none.toml"),
        TRIMLOOP_MODELS=json.dumps({m: {"api_base": f"{provider}/v1", "input_per_mtok": i, "output_per_mtok": o}
                                    for m, (i, o) in PRICES.items()}),
        TRIMLOOP_CONNECTORS=json.dumps({CONNECTOR: {"type": "files", "path": str(tmp / "store")}}),
        TRIMLOOP_PROMPTS=json.dumps({name: RUN_CONFIG for name in PROMPTS}),
        TRIMLOOP_SCHEDULER__HEARTBEAT_SECONDS="5",
    )
    return env


def prepare(tmp: Path, url: str, provider: str, *, suggestions: int, logs: int) -> dict[str, Any]:
    """Seed the database, write and sync the files store, make a token per role."""
    from bench.api import seed
    from trimloop.core import store
    from trimloop.core.db import make_engine, session_scope, upgrade
    from trimloop.core.tables import utcnow

    upgrade(url)
    began = time.perf_counter()
    tokens = {"viewer": seed(url, suggestions=suggestions, logs=logs)}
    write_store(tmp / "store", utcnow())
    synced = subprocess.run([*CLI, "sync"], env=settings_env(tmp, url, provider), capture_output=True, text=True,
                            timeout=600)
    if synced.returncode != 0:
        raise SystemExit(f"trimloop sync failed:\n{synced.stdout[-2000:]}\n{synced.stderr[-2000:]}")
    engine = make_engine(url)
    with session_scope(engine) as session:
        for role in ("reviewer", "engineer", "admin"):
            _, tokens[role] = store.create_token(session=session, name=f"soak-{role}", role=role, actor="soak")
    engine.dispose()
    return {"tokens": tokens, "seed_s": round(time.perf_counter() - began, 1)}


def rss_mb(pid: int | None) -> float | None:
    """Resident set size of a live process, from /proc (psutil is not a dependency)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def log_errors(path: Path) -> dict[str, int]:
    """Exceptions and ERROR lines in a log, with how often each appeared (timestamps cut)."""
    counts: dict[str, int] = defaultdict(int)
    for line in path.read_text(errors="replace").splitlines():
        if re.match(r"^[\w.]+(Error|Exception|Locked)\b.*:", line) or " ERROR " in line:
            counts[re.sub(r"^[\d-]+ [\d:,]+ ", "", line)[:200]] += 1
    return dict(counts)


def stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --- load ------------------------------------------------------------------------------------------

class Recorder:
    """Latency per route; errors (unexpected status or no answer) per route and kind, a few samples."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.kinds: dict[str, int] = defaultdict(int)
        self.samples: list[dict[str, Any]] = []

    async def call(self, client: httpx.AsyncClient, route: str, method: str, path: str, *,
                   expect: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response | None:
        began = time.perf_counter()
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.error(route, exc.__class__.__name__, f"{method} {path}: {exc!r}")
            return None
        self.latencies[route].append(time.perf_counter() - began)
        if response.status_code not in expect:
            self.error(route, str(response.status_code), f"{method} {path}: {response.text[:300]}")
            return None
        return response

    def error(self, route: str, kind: str, detail: str) -> None:
        self.errors[route] += 1
        self.kinds[kind] += 1
        if len(self.samples) < 10:
            self.samples.append({"route": route, "kind": kind, "detail": detail})

    def summary(self) -> dict[str, Any]:
        out = {}
        for route in sorted(set(self.latencies) | set(self.errors)):
            values = sorted(self.latencies[route])
            out[route] = {"requests": len(values) + self.errors.get(route, 0), "errors": self.errors.get(route, 0),
                          "p50_ms": round(statistics.median(values) * 1000, 1) if values else None,
                          "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 1)
                          if values else None,
                          "max_ms": round(values[-1] * 1000, 1) if values else None}
        return out


class Soak:
    def __init__(self, base: str, tokens: dict[str, str], store: Path, *, seconds: float, clients: int,
                 prompt_ids: dict[str, int], suggestions: int, seed_prompts: int):
        self.base, self.tokens, self.store = base, tokens, store
        self.seconds, self.clients = seconds, clients
        self.prompt_ids, self.suggestions, self.seed_prompts = prompt_ids, suggestions, seed_prompts
        self.rec = Recorder()
        self.deadline = 0.0
        self.rng = random.Random(5)
        self.appended = self.synced = 0
        self.reviewed: dict[str, int] = defaultdict(int)
        self.api_runs: list[dict[str, Any]] = []
        self.tokens_cycled = 0

    def client(self, role: str | None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=120, **kwargs)

    def live(self) -> bool:
        return time.monotonic() < self.deadline

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(min(seconds * self.rng.uniform(0.7, 1.3), max(0.0, self.deadline - time.monotonic())))

    async def reader(self) -> None:
        rng = random.Random(id(asyncio.current_task()))
        ids = list(self.prompt_ids.values())
        ops = [  # (weight, route, path maker)
            (6, "GET /suggestions", lambda: f"/suggestions?status=pending&min_savings={rng.choice((0, 10, 50, 100))}"),
            (4, "GET /suggestions", lambda: f"/suggestions?prompt_id={1 + rng.randrange(self.seed_prompts)}"),
            (6, "GET /suggestions/{id}", lambda: f"/suggestions/{1 + rng.randrange(self.suggestions)}"),
            (2, "GET /reports/savings", lambda: "/reports/savings"),
            (1, "GET /reports/savings?format=csv", lambda: "/reports/savings?format=csv"),
            (2, "GET /prompts", lambda: "/prompts"),
            (2, "GET /prompts/{id}/traffic", lambda: f"/prompts/{rng.choice(ids)}/traffic"),
            (2, "GET /runs", lambda: "/runs"),
            (1, "GET /audit", lambda: "/audit?limit=50"),
            (1, "GET /health", lambda: "/health"),
        ]
        weights = [w for w, _, _ in ops]
        async with self.client("viewer") as client:
            while self.live():
                _, route, path = rng.choices(ops, weights)[0]
                await self.rec.call(client, route, "GET", path())

    async def ui(self) -> None:
        async with self.client(None, follow_redirects=False) as client:
            page = await self.rec.call(client, "GET /ui/login", "GET", "/ui/login")
            found = re.search(r'name="csrf" value="([^"]+)"', page.text) if page is not None else None
            if found is None:
                self.rec.error("POST /ui/login", "no_csrf", "the login page has no csrf field")
                return
            await self.rec.call(client, "POST /ui/login", "POST", "/ui/login", expect=(303,),
                                data={"csrf": found.group(1), "token": self.tokens["viewer"], "next": "/ui/"})
            pages = [("GET /ui/", lambda: "/ui/"), ("GET /ui/dashboard", lambda: "/ui/dashboard"),
                     ("GET /ui/suggestions/{id}", lambda: f"/ui/suggestions/{1 + self.rng.randrange(self.suggestions)}"),
                     ("GET /ui/runs", lambda: "/ui/runs")]
            while self.live():
                route, path = self.rng.choice(pages)
                await self.rec.call(client, route, "GET", path())
                await self.pause(0.5)

    async def reviewer(self) -> None:
        from datetime import datetime

        from trimloop.core.tables import utcnow

        fresh = utcnow() - timedelta(days=25)  # POST /connectors/sync expires pending ones older than 30 days
        async with self.client("reviewer") as client:
            listed = await self.rec.call(client, "GET /suggestions", "GET", "/suggestions?status=pending&limit=1000")
            pool = [s["id"] for s in (listed.json() if listed else [])
                    if s["prompt_id"] not in self.prompt_ids.values()
                    and datetime.fromisoformat(s["created_at"]).replace(tzinfo=fresh.tzinfo) > fresh]
            self.rng.shuffle(pool)
            while self.live() and pool:
                sid = pool.pop()
                if self.rng.random() < 0.5:
                    if await self.rec.call(client, "POST /suggestions/{id}/approve", "POST", f"/suggestions/{sid}/approve"):
                        self.reviewed["approved"] += 1
                elif await self.rec.call(client, "POST /suggestions/{id}/reject", "POST", f"/suggestions/{sid}/reject",
                                         json={"reason": "soak: quality dropped on long reviews"}):
                    self.reviewed["rejected"] += 1
                await self.pause(2.0)

    async def ingester(self) -> None:
        from trimloop.core.tables import utcnow

        rng, batch, start = random.Random(17), 50, 10_000
        async with self.client("engineer") as client:
            while self.live():
                now = utcnow()
                for name in PROMPTS:  # production calls of version 1, just now
                    path = self.store / "logs" / f"{name}-live.jsonl"
                    with path.open("a") as handle:
                        handle.write(log_lines(name, start, batch // 2, rng, lambda k: now - timedelta(seconds=k)))
                start += batch // 2
                self.appended += batch
                answer = await self.rec.call(client, "POST /connectors/sync", "POST", "/connectors/sync",
                                             json={"connectors": [CONNECTOR]})
                if answer is not None:
                    added = sum(r["logs_added"] for r in answer.json())
                    self.synced += added
                    if added != batch:
                        self.rec.error("POST /connectors/sync", "sync_count", f"{added} logs added, {batch} appended")
                await self.pause(8.0)  # not ~5 s: uvicorn drops connections idle for 5 s (a keep-alive race)

    async def runner(self) -> None:
        prompt_id = self.prompt_ids["sentiment-b"]
        async with self.client("engineer") as client:
            while self.live():
                started = await self.rec.call(client, "POST /runs", "POST", "/runs", expect=(202,),
                                              json={"prompt_id": prompt_id, "budget_calls": 1000})
                if started is None:
                    await self.pause(5.0)
                    continue
                run_id, began, status = started.json()["id"], time.monotonic(), "queued"
                while self.live() and status in ("queued", "running"):
                    await self.pause(2.0)
                    answer = await self.rec.call(client, "GET /runs/{id}", "GET", f"/runs/{run_id}")
                    if answer is not None:
                        status = answer.json()["status"]
                if status in ("queued", "running"):
                    cancelled = await self.rec.call(client, "POST /runs/{id}/cancel", "POST", f"/runs/{run_id}/cancel")
                    status = cancelled.json()["status"] if cancelled is not None else status
                else:
                    await self.rec.call(client, "GET /runs/{id}/events", "GET", f"/runs/{run_id}/events?follow=false")
                self.api_runs.append({"run_id": run_id, "status": status,
                                      "seconds": round(time.monotonic() - began, 1)})
                await self.pause(5.0)

    async def tokens_cycle(self) -> None:
        async with self.client("admin") as admin, self.client(None) as anonymous:
            while self.live():
                await self.pause(30.0)
                if not self.live():
                    break
                created = await self.rec.call(admin, "POST /tokens", "POST", "/tokens", expect=(201,),
                                              json={"name": f"soak-{self.tokens_cycled}", "role": "viewer"})
                if created is None:
                    continue
                fresh = {"Authorization": f"Bearer {created.json()['token']}"}
                await self.rec.call(anonymous, "GET /suggestions", "GET", "/suggestions?limit=5", headers=fresh)
                await self.rec.call(admin, "POST /tokens/{id}/revoke", "POST", f"/tokens/{created.json()['id']}/revoke")
                await self.rec.call(anonymous, "GET /suggestions (revoked token)", "GET", "/suggestions?limit=5",
                                    headers=fresh, expect=(401,))
                await self.rec.call(anonymous, "GET /suggestions (bogus token)", "GET", "/suggestions?limit=5",
                                    headers={"Authorization": "Bearer tlk_nope_nope"}, expect=(401,))
                self.tokens_cycled += 1

    async def run(self) -> float:
        self.deadline = time.monotonic() + self.seconds
        began = time.monotonic()
        await asyncio.gather(*(self.reader() for _ in range(self.clients)), self.ui(), self.reviewer(),
                             self.ingester(), self.runner(), self.tokens_cycle())
        return time.monotonic() - began


class WorkerLoop:
    """`trimloop optimize sentiment --json` in its own process, again and again until told to stop."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs: list[dict[str, Any]] = []
        self.stopping = False

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    async def loop(self) -> None:
        while not self.stopping:
            began = time.monotonic()
            log = self.log.with_name(f"{self.log.stem}-{len(self.runs) + 1}.log")
            with log.open("wb") as err:
                self.proc = subprocess.Popen([*CLI, "optimize", "sentiment", "--json"], env=self.env,
                                             stdout=subprocess.PIPE, stderr=err)
            while self.proc.poll() is None:
                await asyncio.sleep(0.5)
            out = self.proc.stdout.read().decode() if self.proc.stdout else ""
            entry: dict[str, Any] = {"exit_code": self.proc.returncode, "seconds": round(time.monotonic() - began, 1)}
            try:
                summary = json.loads(out)
                entry.update({k: summary.get(k) for k in ("run_id", "status", "error", "calls", "spent",
                                                          "search_calls", "certify_calls")},
                             suggestion_id=(summary.get("suggestion") or {}).get("id"))
            except ValueError:
                entry["status"] = "terminated" if self.stopping else "no JSON"
                entry["stdout_tail"] = out[-500:]
                entry["stderr_tail"] = log.read_text(errors="replace")[-1500:]
            self.runs.append(entry)


async def sample_rss(pids: dict[str, Any], every: float, stop_at: asyncio.Event,
                     out: dict[str, list[dict[str, Any]]]) -> None:
    began = time.monotonic()
    while True:
        t = round(time.monotonic() - began)
        for name, pid in pids.items():
            out[name].append({"t_s": t, "rss_mb": rss_mb(pid())})
        try:
            await asyncio.wait_for(stop_at.wait(), timeout=every)
        except asyncio.TimeoutError:
            continue
        t = round(time.monotonic() - began)
        for name, pid in pids.items():
            out[name].append({"t_s": t, "rss_mb": rss_mb(pid())})
        return


async def soak(args: argparse.Namespace, tmp: Path, url: str, provider: str, prep: dict[str, Any]) -> dict[str, Any]:
    env = settings_env(tmp, url, provider)
    port = free_port()
    server_log = tmp / "server.log"
    with server_log.open("wb") as err:
        server = subprocess.Popen([*CLI, "serve", "--no-scheduler", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=err, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    worker = WorkerLoop(env, tmp / "worker.log")
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{server_log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {prep['tokens']['viewer']}"},
                                     timeout=60) as client:
            prompts = (await client.get("/prompts", params={"limit": 1000})).json()
        ids = {p["name"]: p["id"] for p in prompts if p["name"] in PROMPTS}
        load = Soak(base, prep["tokens"], tmp / "store", seconds=args.seconds, clients=args.clients, prompt_ids=ids,
                    suggestions=args.suggestions, seed_prompts=len(prompts) - len(ids))
        rss: dict[str, list[dict[str, Any]]] = {"server": [], "worker": []}
        done = asyncio.Event()
        sampler = asyncio.create_task(sample_rss({"server": lambda: server.pid if server.poll() is None else None,
                                                  "worker": worker.pid}, args.sample_s, done, rss))
        worker_task = asyncio.create_task(worker.loop())
        elapsed = await load.run()
        worker.stopping = True  # no new run; let the current one end (the first must, to say it finished)
        drain_until = time.monotonic() + args.drain_s
        while not worker_task.done() and time.monotonic() < drain_until:
            await asyncio.sleep(0.5)
        if not worker_task.done():
            stop(worker.proc)
            await worker_task
        done.set()
        await sampler
        server_alive = server.poll() is None
    finally:
        worker.stopping = True
        stop(worker.proc)
        stop(server)
    routes = load.rec.summary()
    succeeded = [r for r in worker.runs if r.get("status") == "succeeded"]
    return {
        "seconds": round(elapsed, 1), "clients": args.clients, "provider_latency_ms": args.latency_ms,
        "store": {"suggestions": args.suggestions, "logs": args.logs, "seed_s": prep["seed_s"], "database": "sqlite"},
        "requests": sum(r["requests"] for r in routes.values()),
        "requests_per_s": round(sum(r["requests"] for r in routes.values()) / elapsed, 1) if elapsed else None,
        "errors": sum(load.rec.errors.values()), "error_kinds": dict(load.rec.kinds),
        "error_samples": load.rec.samples, "routes": routes,
        "rss_mb": rss,
        "optimization": {"finished": bool(succeeded), "first_success_s": succeeded[0]["seconds"] if succeeded else None,
                         "worker_attempts_failed": len([r for r in worker.runs if r.get("exit_code")]),
                         "worker_runs": worker.runs, "api_runs": load.api_runs},
        "reviews": dict(load.reviewed), "tokens_cycled": load.tokens_cycled,
        "logs_appended": load.appended, "logs_synced": load.synced,
        "server_alive_at_end": server_alive,
        "server_log_errors": log_errors(server_log),
        "load_avg_1m": round(os.getloadavg()[0], 2), "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the load lasts")
    parser.add_argument("--clients", type=int, default=6, help="concurrent readers (besides the writers and UI)")
    parser.add_argument("--suggestions", type=int, default=1000)
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=200.0, help="the fake provider's latency per call")
    parser.add_argument("--sample-s", type=float, default=30.0, help="seconds between RSS samples")
    parser.add_argument("--drain-s", type=float, default=300.0,
                        help="after the load, how long to wait for the worker's current run to end")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR (must not exist) and keep it: database, logs")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.clients < 1:
        parser.error("--seconds must be > 0 and --clients >= 1")
    with tempfile.TemporaryDirectory(prefix="trimloop-bench-soak-") as folder:
        tmp = Path(args.keep) if args.keep else Path(folder)
        if args.keep:
            tmp.mkdir(parents=True, exist_ok=False)
        rules = tmp / "replies.json"
        rules.write_text(json.dumps(REPLIES))
        url = f"sqlite:///{tmp / 'soak.db'}"
        with running("--latency-ms", str(args.latency_ms), "--count-tokens", "--replies", str(rules)) as provider:
            prep = prepare(tmp, url, provider, suggestions=args.suggestions, logs=args.logs)
            result = asyncio.run(soak(args, tmp, url, provider, prep))
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 and result["optimization"]["finished"] else 1


if __name__ == "__main__":
    sys.exit(main())
