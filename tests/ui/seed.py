"""Data for the UI's tests and benchmark: a real suggestion made by the optimizer (files store,
sync, a run through the gateway with a fake provider), plus hand-made prompts and suggestions with full evidence,
one of them with a hostile name (`<script>`, `{{7*7}}`)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import Engine

from trimloop.connectors.sync import sync
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.identity import version_identity
from trimloop.core.settings import Settings
from trimloop.core.tables import LogRecord, OptimizationRun, Prompt, PromptVersion, Suggestion, utcnow

HOSTILE = '<script>alert("x")</script> {{7*7}}'
PARAMS = {"max_tokens": 3, "temperature": 0}


def files_store(tmp_path: Path) -> tuple[Path, Settings]:
    """The end-to-end test's sentiment prompt with 200 logged calls over 27 days."""
    from tests.api.test_end_to_end import log_lines
    from trimloop.testing.sentiment import VERBOSE

    folder = tmp_path / "store"
    (folder / "prompts" / "sentiment").mkdir(parents=True)
    (folder / "logs").mkdir()
    front = yaml.safe_dump({"model": "local/gemma3-270m", "params": PARAMS, "labels": ["production"]})
    (folder / "prompts" / "sentiment" / "1.md").write_text(f"---\n{front}---\n{VERBOSE}\n")
    settings = Settings(home=tmp_path / "home", connectors={"local": {"type": "files", "path": str(folder)}},
                        prompts={"sentiment": {"rungs": [8, 24], "dataset_size": 200, "holdout_fraction": 0.6}},
                        api={"failed_logins_per_minute": 1000})
    (folder / "logs" / "june.jsonl").write_text(
        log_lines(settings, "1", "local/gemma3-270m", utcnow() - timedelta(days=27), 200))
    return folder, settings


def optimized(engine: Engine, settings: Settings) -> int:
    """Sync, then one optimization run through the gateway with a fake provider; the id of the run (it made a suggestion)."""
    from tests.api.test_end_to_end import gateway_for
    from trimloop.optimizer.run import create_run, execute_run

    assert not sync(engine=engine, settings=settings)[0].fatal
    with session_scope(engine) as session:
        prompt_id = session.exec(__import__("sqlmodel").select(Prompt.id).where(Prompt.name == "sentiment")).one()
        run_id = create_run(session=session, prompt_id=prompt_id, config={"margin": 0.05}, budget_dollars=5.0).id

    async def execute() -> None:
        async with gateway_for(settings, engine) as gateway:
            await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=gateway)

    job = lambda: asyncio.run(execute())  # noqa: E731
    with ThreadPoolExecutor(1) as pool:  # its own thread: the caller may already run an event loop
        pool.submit(job).result()
    with session_scope(engine) as session:
        run = session.get(OptimizationRun, run_id)
        assert run is not None and run.results.suggestion_id is not None, (run.status if run else None, run and run.error)
    return run_id  # type: ignore[return-value]


def evidence(i: int, *, ok: bool = True) -> dict[str, Any]:
    """Evidence shaped like `optimizer.record.record_suggestion`'s."""
    before = "You are a very careful ticket sorter. Please read the ticket. Answer billing, bug or other."
    after = "Sort the ticket: billing, bug or other."
    lower = -0.02 if ok else -0.09
    return {
        "changes": {"template_diff": [["delete", "You are a very careful ticket sorter. Please read the ticket. "],
                                      ["insert", "Sort the ticket: "], ["equal", "billing, bug or other."]],
                    "template_chars": [len(before), len(after)], "template_kind": ["text", "text"],
                    "model": ["local/gemma3-270m", "local/smollm2-135m"], "params": {"temperature": [0.7, 0]}},
        "lineage": [{"move": "shorten", "detail": "cut 9 words"}, {"move": "retarget", "detail": "smollm2-135m"}],
        "evaluators": {"exact": {"method": "tango", "n": 120, "samples": 120, "baseline_mean": 0.91,
                                 "candidate_mean": 0.9, "delta": -0.01, "lower": lower, "upper": 0.01,
                                 "margin": 0.05, "alpha": 0.05, "p_value": 0.01,
                                 "verdict": "non-inferior" if ok else "inconclusive", "passed": ok}},
        "verdict": "passed", "n": 120, "prompt_tokens": [160.0, 61.0],
        "differing_items": [{"item_id": f"t{i}-{k}", "inputs": {"ticket": f"refund for order {k} <b>now</b>"},
                             "expected": "billing", "baseline_output": "billing",
                             "candidate_output": "other" if k else "billing.", "baseline_scores": {"exact": 1.0},
                             "candidate_scores": {"exact": 0.0 if k else 1.0}} for k in range(3)],
        "savings": {"window_days": 28, "calls_per_day": 1200.0, "baseline_cost_per_call": 0.002,
                    "candidate_cost_per_call": 0.0008, "cost_ratio": 0.4, "monthly": 43.2, "monthly_low": 38.0,
                    "monthly_high": 48.0, "baseline_latency_p50_s": 0.41, "baseline_latency_p95_s": 0.9,
                    "candidate_latency_p50_s": 0.2, "candidate_latency_p95_s": 0.45, "optimization_spend": 0.8,
                    "payback_days": 0.6},
    }


def prompt_with_suggestions(engine: Engine, name: str, n: int, *, days_of_logs: int = 14,
                            calls_per_day: int = 4) -> list[int]:
    """A prompt (production version, a few days of logs) and `n` pending suggestions against it."""
    with session_scope(engine) as session:
        prompt = Prompt(name=name, connector="trimloop", description=f"about {name}")
        session.add(prompt)
        session.flush()
        template = {"kind": "text", "text": f"Ticket for {name}: {{{{ticket}}}}\nAnswer:"}
        sha = version_identity(template=template, model="local/gemma3-270m", params={})
        base = PromptVersion(prompt_id=prompt.id, sha=sha, template=template, model="local/gemma3-270m",  # type: ignore[arg-type]
                             params={}, connector="trimloop")
        session.add(base)
        session.flush()
        store.move_label(session=session, prompt_id=prompt.id, label="production", version_id=base.id)  # type: ignore[arg-type]
        start = utcnow() - timedelta(days=days_of_logs)
        session.add_all([LogRecord(connector="trimloop", external_id=f"{name}-{d}-{k}", prompt_id=prompt.id,
                                   version_id=base.id, model=base.model, cost=0.002 + 0.0001 * k,
                                   called_at=start + timedelta(days=d, hours=k))
                         for d in range(days_of_logs) for k in range(calls_per_day)])
        ids = []
        for i in range(n):
            cand = {"kind": "text", "text": f"{name} {i}: {{{{ticket}}}}"}
            csha = version_identity(template=cand, model="local/smollm2-135m", params={})
            version = PromptVersion(prompt_id=prompt.id, sha=csha, template=cand, model="local/smollm2-135m",  # type: ignore[arg-type]
                                    params={}, connector="trimloop")
            session.add(version)
            session.flush()
            monthly = 10.0 + (i * 37) % 500
            suggestion = Suggestion(
                prompt_id=prompt.id, baseline_version_id=base.id, candidate_version_id=version.id,  # type: ignore[arg-type]
                candidate_sha=csha, evidence=evidence(i, ok=i % 7 != 3), baseline_cost_per_call=0.002,
                candidate_cost_per_call=0.0008, baseline_latency_p50_s=0.41, candidate_latency_p50_s=0.2,
                projected_monthly_savings=monthly, savings_low=monthly * 0.85, savings_high=monthly * 1.15,
                optimization_spend=0.8, payback_days=0.6)
            session.add(suggestion)
            session.flush()
            ids.append(suggestion.id)
        return ids  # type: ignore[return-value]


def tokens(engine: Engine) -> dict[str, str]:
    """One clear-text API token per role."""
    out = {}
    with session_scope(engine) as session:
        for role in ("viewer", "reviewer", "engineer", "admin"):
            _, clear = store.create_token(session=session, name=f"{role}-ui", role=role, actor="test")
            out[role] = clear
    return out
