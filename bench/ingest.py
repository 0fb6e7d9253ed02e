"""Ingest benchmark: N JSONL log lines synced into SQLite by the files connector; prints JSON.

    python -m bench.ingest [--lines 1000000] [--batch-size N]

Reports records per second and peak resident memory (`records_per_s`, `peak_rss_mb`). The file
is streamed, so memory should not grow with --lines (compare 100000 and 1000000).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from trimloop.connectors.files import FilesConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core.db import make_engine, upgrade

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
LABELS = ("billing", "bug", "other")


def write_store(root: Path, lines: int) -> Path:
    """A files-connector folder with one prompt and `lines` calls in trimloop's log shape."""
    (root / "prompts" / "triage").mkdir(parents=True)
    (root / "prompts" / "triage" / "1.md").write_text(PROMPT, encoding="utf-8")
    (root / "logs").mkdir()
    log = root / "logs" / "calls.jsonl"
    with log.open("w", encoding="utf-8") as out:
        for i in range(lines):
            record = {
                "id": f"call-{i:08d}", "prompt": "triage", "version": "1",
                "inputs": {"ticket": f"My card was charged twice for order {i}, please help"},
                "output": LABELS[i % 3], "model": "gpt-4o-mini", "input_tokens": 40 + i % 17,
                "output_tokens": 1, "cost": 6.15e-06, "latency_s": 0.2 + (i % 50) / 100,
                "called_at": f"2025-06-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
                "feedback": [{"name": "thumbs_up", "value": i % 2, "source": "user"}] if i % 10 == 0 else [],
            }
            out.write(json.dumps(record) + "\n")
    return root


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, help="records per sync transaction (default: the sync's own)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trimloop-ingest-") as tmp:
        root = write_store(Path(tmp) / "store", args.lines)
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        connector = FilesConnector(name="bench", options={"path": str(root)})
        rss_before = _peak_rss_mb()
        started = time.perf_counter()
        batch = {"batch_size": args.batch_size} if args.batch_size else {}
        report = sync_connector(engine=engine, connector=connector, **batch)
        seconds = time.perf_counter() - started
        engine.dispose()
    if report.fatal or report.logs_added != args.lines:
        print(json.dumps({"error": report.to_dict()}), file=sys.stderr)
        raise SystemExit(1)
    result = {
        "lines": args.lines,
        "seconds": round(seconds, 2),
        "records_per_s": round(args.lines / seconds),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_sync_mb": round(rss_before, 1),
    }
    print(json.dumps(result))
    return result


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


if __name__ == "__main__":
    main()
