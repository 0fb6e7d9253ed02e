"""Optimization on real data with the bundled models: does trimloop find a certified cheaper prompt?

sst2: a verbose few-shot Gemma-270M prompt whose "production logs" are produced by really running
it on the 1,821 SST-2 test sentences (gold labels arrive as reviewer feedback), then a run at
margin 0.03. e2e: order-of-fields extraction on E2E sentences, scored with json_fields.
Prints `{"tasks": {"sst2": {...}, "e2e": {...}}}`; each task names the `moves` behind its
certified candidate and `saving_share` ({"input", "output", "cached"}: the share of the saving
from each token class). The response cache lives in
`bench-output/optimize/` so a rerun is fast.

    python -m bench.optimize [--tasks sst2,e2e] [--sst2-n 1821] [--e2e-n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select

from bench._util import machine
from trimloop.api.executor import real_gateway
from trimloop.connectors.sync import sync
from trimloop.core.db import get_engine, session_scope, upgrade
from trimloop.core.settings import get_settings, load_settings
from trimloop.core.tables import Prompt, Suggestion, utcnow
from trimloop.core.templates import Template, render
from trimloop.optimizer.queue import claim_run, enqueue, execute_claimed, worker_id

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

SST2_PROMPT = """You are a **very** careful film critic's assistant. Please read the sentence from a movie review carefully.
Your task is to decide whether the sentence expresses a positive or a negative opinion about the movie. It is very important that you answer with exactly one word: positive or negative. Thank you!

Here are some examples:

Review: a gorgeous , witty , seductive movie .
Sentiment: positive

Review: the plot is nothing but boilerplate clichés from start to finish .
Sentiment: negative

Review: it 's a charming and often affecting journey .
Sentiment: positive

Review: the acting is amateurish and the script is worse .
Sentiment: negative

Review: one of the most exciting and heartfelt films of the year .
Sentiment: positive

Review: a tedious , joyless exercise in self-indulgence .
Sentiment: negative

Review: {{text}}
Sentiment:"""

E2E_PROMPT = """Read the sentence about a restaurant and write its attributes as one line of JSON with the keys name, eatType, food, priceRange, area, familyFriendly, near and customerRating. Leave out keys the sentence does not mention.

Sentence: The Punter is a cheap coffee shop near Café Sicilia that serves Indian food.
JSON: {"name": "The Punter", "eatType": "coffee shop", "food": "Indian", "priceRange": "cheap", "near": "Café Sicilia"}

Sentence: {{text}}
JSON:"""

TASKS = {
    "sst2": {"file": "sst2/test.jsonl", "prompt": SST2_PROMPT, "params": {"temperature": 0, "max_tokens": 3, "stop": ["\n"]},
             "expected": lambda row: row["label"], "options": {
                 "evaluators": {"label": {"labels": ["positive", "negative"]}}, "margin": 0.03,
                 "dataset_size": 1821, "holdout_fraction": 0.85, "rungs": [24, 72, 144], "max_candidates": 10,
                 "certify_top": 2, "budget_calls": 2000, "search_budget_calls": 400}},
    "e2e": {"file": "e2e_extraction/test.jsonl", "prompt": E2E_PROMPT,
            "params": {"temperature": 0, "max_tokens": 80, "stop": ["\n"]},
            "expected": lambda row: json.dumps(row["fields"]), "options": {
                "evaluators": ["json_fields"], "margin": 0.03, "dataset_size": 1000, "holdout_fraction": 0.7,
                "rungs": [10, 30, 60], "max_candidates": 8, "certify_top": 2, "budget_calls": 1500,
                "search_budget_calls": 300}},
}


def write_workspace(folder: Path, name: str, task: dict[str, Any]) -> None:
    prompts = folder / "store" / "prompts" / name
    prompts.mkdir(parents=True, exist_ok=True)
    (folder / "store" / "logs").mkdir(parents=True, exist_ok=True)
    front = json.dumps({"model": "local/gemma3-270m", "params": task["params"], "labels": ["production"]})
    (prompts / "1.md").write_text(f"---\n{front}\n---\n{task['prompt']}\n", encoding="utf-8")
    options = "\n".join(f"{k} = {json.dumps(v)}" for k, v in task["options"].items() if k != "evaluators")
    evaluators = task["options"]["evaluators"]
    evaluators_toml = (json.dumps(evaluators) if isinstance(evaluators, list) else
                       "{" + ", ".join(f"{k} = {{labels = {json.dumps(v['labels'])}}}" for k, v in evaluators.items()) + "}")
    (folder / "trimloop.toml").write_text(
        f'home = "{folder / ".trimloop"}"\n[connectors.bench]\ntype = "files"\npath = "{folder / "store"}"\n'
        f'[prompts.{name}]\nexpected_from = "expected"\nevaluators = {evaluators_toml}\n{options}\n', encoding="utf-8")


async def produce_logs(folder: Path, name: str, task: dict[str, Any], rows: list[dict[str, Any]], gateway: Any) -> None:
    template = Template.plain(task["prompt"])
    now = utcnow()
    limit = asyncio.Semaphore(2)

    async def one(i: int, row: dict[str, Any]) -> str:
        async with limit:
            result = await gateway.call("local/gemma3-270m", text=render(template, {"text": row["text"]}),  # type: ignore[arg-type]
                                        params=task["params"])
        return json.dumps({"id": f"{name}-{row['id']}", "prompt": name, "version": "1", "inputs": {"text": row["text"]},
                           "output": result.output, "model": "local/gemma3-270m", "input_tokens": result.input_tokens,
                           "output_tokens": result.output_tokens, "cost": result.cost,
                           "latency_s": round(result.latency_s, 4),
                           "called_at": (now - timedelta(days=28) + timedelta(seconds=(i + 0.5) * 28 * 86400 / len(rows))).isoformat(),
                           "feedback": [{"name": "expected", "value": task["expected"](row), "source": "gold"}]})

    lines = await asyncio.gather(*[one(i, r) for i, r in enumerate(rows)])
    (folder / "store" / "logs" / "calls.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_task(name: str, n: int, root: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    task = TASKS[name]
    if options:  # e.g. objective = "latency", control = "always" (issue 21)
        task = task | {"options": task["options"] | options}
    path = DATA / task["file"]
    if not path.exists():
        return {"skipped": f"{path} not found (the shared datasets folder is absent)"}
    rows = [json.loads(line) for line in path.open(encoding="utf-8")][:n]
    folder = root / name
    write_workspace(folder, name, task)
    os.environ["TRIMLOOP_CONFIG"] = str(folder / "trimloop.toml")
    get_settings.cache_clear()
    settings = load_settings()
    upgrade(settings.db_url)
    engine = get_engine(settings)
    started = time.monotonic()
    gateway, starter = real_gateway(settings, engine)
    try:
        asyncio.run(_closing(produce_logs(folder, name, task, rows, gateway), gateway))
        logs_s = time.monotonic() - started
        sync(engine=engine, settings=settings)
        with session_scope(engine) as session:
            prompt_id = session.exec(select(Prompt.id).where(Prompt.name == name)).one()
            for old in session.exec(select(Suggestion).where(Suggestion.prompt_id == prompt_id, Suggestion.status == "pending")):
                old.status = "expired"  # a rerun of the bench measures again
        run_id = enqueue(engine, prompt_id=prompt_id, reason="bench")
        assert run_id is not None and claim_run(engine, run_id=run_id, worker=worker_id())
        gateway2 = gateway.for_another_loop()  # a new event loop; the same model servers
        opt_started = time.monotonic()
        run = asyncio.run(_closing(execute_claimed(engine=engine, settings=settings, run_id=run_id, gateway=gateway2,
                                                   worker=worker_id()), gateway2))
        opt_s = time.monotonic() - opt_started
    finally:
        starter.stop()
    results = run.results
    out: dict[str, Any] = {
        "n_logs": len(rows), "status": run.status, "error": run.error, "certified": results.suggestion_id is not None,
        "search_calls": results.search_calls, "certify_calls": results.certify_calls,
        "search_requests": results.search_requests, "certify_requests": results.certify_requests,
        "calls": run.calls_made, "cache_hits": results.cache_hits, "logs_wall_s": round(logs_s, 1),
        "wall_s": round(opt_s, 1), "no_suggestion": results.no_suggestion,
        "certifications": [c.model_dump(mode="json") for c in results.certifications] or None,
        "objective": results.objective,
        "control": results.control.model_dump(mode="json") if results.control is not None else None,
        "control_calls": results.control.calls if results.control is not None else 0,
    }
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion).where(Suggestion.run_id == run.id)).first()
        if suggestion is not None:
            ev = suggestion.evidence
            e = next(iter(ev.evaluators.values()))
            tokens = ev.prompt_tokens or [None, None]
            out.update(
                moves=[step.move for step in ev.lineage],  # the moves behind the certified candidate
                saving_share=ev.savings.saving_share if ev.savings is not None else None,  # input / output / cached
                output_tokens=ev.output_tokens,
                change=[step.detail for step in ev.lineage],
                cost_cut=1 - suggestion.candidate_cost_per_call / suggestion.baseline_cost_per_call,
                token_cut=1 - tokens[1] / tokens[0] if tokens[0] else None,
                accuracy_before=e.baseline_mean, accuracy_after=e.candidate_mean,
                delta=e.delta, delta_ci_low=e.lower, delta_ci_high=e.upper, n=e.n,
                latency_p50_before=suggestion.baseline_latency_p50_s, latency_p50_after=suggestion.candidate_latency_p50_s,
                latency=ev.latency.model_dump(mode="json") if ev.latency is not None else None,
            )
        else:
            out.update(moves=[], saving_share=None, cost_cut=0.0, token_cut=0.0, accuracy_before=results.baseline_scores,
                       accuracy_after=None, delta_ci_low=None)
    return out


async def _closing(work: Any, gateway: Any) -> Any:
    try:
        return await work
    finally:
        await gateway.aclose()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="optimization on real data with the bundled models")
    parser.add_argument("--tasks", default="sst2,e2e")
    parser.add_argument("--sst2-n", type=int, default=1821)
    parser.add_argument("--e2e-n", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=Path("bench-output/optimize"))
    parser.add_argument("--objective", choices=["cost", "latency"], default=None, help="the runs' objective")
    parser.add_argument("--latency", choices=["p50", "p95"], default=None, help="the latency statistic")
    parser.add_argument("--control", choices=["auto", "always", "never"], default=None, help="the control arm")
    args = parser.parse_args(argv)
    options = {k: v for k, v in (("objective", args.objective), ("latency", args.latency),
                                 ("control", args.control)) if v is not None}
    root = args.dir.resolve()
    sizes = {"sst2": args.sst2_n, "e2e": args.e2e_n}
    tasks = {name: run_task(name, sizes[name], root, options) for name in args.tasks.split(",") if name}
    result = {"bench": "optimize", "tasks": tasks, "machine": machine()}
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
