"""The web UI's weight and speed with 1,000 pending suggestions; prints JSON.

For each page: bytes transferred (the HTML plus the stylesheet and scripts it loads, uncompressed)
against a 300 KB target, and the server's render time p50/p95 (in process, through the ASGI stack)
against a 50 ms p50 target. Run as `python -m bench.ui [--suggestions N] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from bench._util import machine
from tests.ui import seed
from trimloop.api.app import create_app
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.core.settings import Settings
from trimloop.core.tables import OptimizationRun, RunEvent

BYTES_TARGET = 300_000
P50_TARGET_MS = 50.0


def seeded(folder: Path, n: int) -> tuple[TestClient, dict[str, str], int]:
    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    engine = make_engine(url)
    per_prompt = 50
    ids: list[int] = []
    for p in range(max(1, n // per_prompt)):
        ids += seed.prompt_with_suggestions(engine, f"prompt-{p:03d}", min(per_prompt, n - len(ids)),
                                            days_of_logs=30, calls_per_day=24)
    with session_scope(engine) as session:
        run = OptimizationRun(prompt_id=1, status="succeeded", budget_dollars=5.0, spent_dollars=1.2, calls_made=800)
        session.add(run)
        session.flush()
        session.add_all([RunEvent(run_id=run.id, kind="candidate.proposed",  # type: ignore[arg-type]
                                  data={"sha": f"{i:064x}", "label": "shorten"}) for i in range(40)])
        run_id = run.id
    tokens = seed.tokens(engine)
    settings = Settings(home=folder / "home", api={"failed_logins_per_minute": 1000})
    client = TestClient(create_app(settings, engine))
    page = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    client.post("/ui/login", data={"csrf": csrf, "token": tokens["admin"], "next": "/ui/"})
    return client, {"suggestion": f"/ui/suggestions/{ids[len(ids) // 2]}"}, run_id  # type: ignore[return-value]


def assets(client: TestClient, html: str) -> int:
    refs = set(re.findall(r'(?:href|src)="(/ui/static/[^"]+)"', html))
    return sum(len(client.get(ref).content) for ref in refs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suggestions", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        client, extra, run_id = seeded(Path(tmp), args.suggestions)
        with client:
            pages = {"queue": "/ui/", "suggestion": extra["suggestion"], "dashboard": "/ui/dashboard",
                     "runs": "/ui/runs", "run": f"/ui/runs/{run_id}"}
            out = {}
            for name, path in pages.items():
                first = client.get(path)
                assert first.status_code == 200, (path, first.status_code)
                times = []
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    client.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                times.sort()
                total = len(first.content) + assets(client, first.text)
                out[name] = {"path": path, "html_bytes": len(first.content), "transferred_bytes": total,
                             "render_ms_p50": round(statistics.median(times), 2),
                             "render_ms_p95": round(times[int(len(times) * 0.95) - 1], 2),
                             "bytes_ok": total < BYTES_TARGET}
    result = {"suggestions": args.suggestions, "repeat": args.repeat, "pages": out,
              "targets": {"transferred_bytes": BYTES_TARGET, "render_ms_p50": P50_TARGET_MS},
              "all_bytes_ok": all(p["bytes_ok"] for p in out.values()),
              "all_p50_ok": all(p["render_ms_p50"] < P50_TARGET_MS for p in out.values()),
              "machine": machine()}
    print(json.dumps(result, indent=2))
    return 0 if result["all_bytes_ok"] and result["all_p50_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
