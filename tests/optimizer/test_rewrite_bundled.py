"""`rewrite` (dspy.GEPA) end to end on the bundled models: Gemma 3 270M answers SST-2 reviews with
a long instruction, SmolLM2 135M reflects on its mistakes. A 135M proposer rarely writes a better
instruction; this checks that the whole path runs through the gateway within its budget and that
what it found is raced and reported honestly (the evidence is printed: `pytest -s`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.evals.test_integration import LONG, PARAMS
from trimloop.core.catalog import resolve_model
from trimloop.core.gateway import Gateway
from trimloop.core.ledger import Ledger
from trimloop.core.templates import Template
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.runner import EvalItem, evaluate_items
from trimloop.optimizer.context import RunContext
from trimloop.optimizer.search import SearchConfig, search
from trimloop.optimizer.spec import MoveContext, VersionSpec

# the bundled models run once, on SQLite; the fake-gateway twin runs on PostgreSQL too
pytestmark = [pytest.mark.integration, pytest.mark.sqlite_only]
DEV = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "sst2" / "dev.jsonl"
TASK, PROPOSER = "local/gemma3-270m", "local/smollm2-135m"
MAX_CALLS = 96  # the search's budget: GEPA may spend a quarter of it


async def test_gepa_rewrite_runs_on_the_bundled_models_within_its_budget(local_models) -> None:
    rows = [json.loads(line) for line in DEV.read_text().splitlines()[:24]]
    items = [EvalItem(id=r["id"], inputs={"text": r["text"]}, expected=r["label"]) for r in rows]
    evaluators = build_evaluators({"label": {"labels": ["positive", "negative"]}})
    baseline = VersionSpec(Template.plain(LONG), TASK, PARAMS)
    async with Gateway(local_models) as gateway:
        base = {r.item_id: r for r in await evaluate_items(template=baseline.template, model=TASK, params=PARAMS,
                                                            items=items, evaluators=evaluators, gateway=gateway)}
        ledger = Ledger(max_calls=1000)
        events: list[tuple[str, dict]] = []
        run = RunContext(baseline=baseline, search_items=items, holdout_items=[], baseline_results=base,
                         evaluators=evaluators, gateway=gateway, ledger=ledger, concurrency=2,
                         emit=lambda kind, data: events.append((kind, data)))
        moves = MoveContext(models=[], resolve=lambda m: resolve_model(local_models, m), gateway=gateway,
                            proposer_model=PROPOSER, ledger=ledger)
        started = time.monotonic()
        found = await search(run=run, context=moves, config=SearchConfig(rungs=(8, 24), max_calls=MAX_CALLS))
        wall = time.monotonic() - started
    rewrites = [a for a in found.arms if a.candidate.label == "rewrite"]
    evidence = {
        "wall_s": round(wall, 1), "search_calls": found.calls, "ledger_calls": ledger.calls,
        "baseline_label": sum(r.scores["label"] for r in base.values()) / len(base),
        "rewrites": [{"detail": a.candidate.lineage[-1]["detail"], "n": a.n, "label": a.mean_score("label"),
                      "status": str(a.status), "reason": a.reason,
                      "instruction": a.candidate.version.template.text.split("\n\n")[0]} for a in rewrites],
        "gepa": next(d for k, d in events if k == "rewrite.gepa"),
        "ranked_first": found.ranked[0].candidate.label if found.ranked else None,
    }
    print(json.dumps(evidence, indent=1))
    assert ledger.calls <= MAX_CALLS and found.calls <= MAX_CALLS
    gepa = evidence["gepa"]
    assert 0 < gepa["calls"] <= MAX_CALLS * SearchConfig().rewrite_share  # GEPA ran, within its share
    assert gepa["metric_calls"] <= gepa["max_metric_calls"] and gepa["candidates"][0]["score"] is not None
    for arm in rewrites:  # what GEPA found raced like every other candidate, with its own words
        assert arm.n > 0 and arm.candidate.lineage[-1]["detail"].startswith(f"GEPA by {PROPOSER}")
