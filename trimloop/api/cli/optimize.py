"""`trimloop optimize PROMPT`: run one optimization now and show the suggestion, or why there is none."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import col, select

from trimloop.api import webhooks
from trimloop.api.cli.common import money, settings_and_engine, signed
from trimloop.api.executor import real_gateway
from trimloop.api.services import start_run
from trimloop.core.db import session_scope
from trimloop.core.errors import Conflict, NotFound
from trimloop.core.evidence import Verdict
from trimloop.core.status import RunStatus
from trimloop.core.tables import OptimizationRun, Prompt, Suggestion
from trimloop.optimizer.queue import claim_run, execute_claimed, worker_id

ACTOR = "cli"


def optimize(
    prompt: str = typer.Argument(..., help="the prompt's name, as `trimloop sync` stored it"),
    budget_calls: int = typer.Option(None, "--budget-calls", min=1, help="cap on LLM calls (default 2000)"),
    margin: float = typer.Option(None, "--margin", min=0, max=0.99, help="non-inferiority margin (default 0.02)"),
    as_json: bool = typer.Option(False, "--json", help="print the run and suggestion as JSON"),
) -> None:
    """Search for a cheaper version of PROMPT now, certify it on the holdout, and print the verdict."""
    settings, engine = settings_and_engine()
    with session_scope(engine) as session:
        row = session.exec(select(Prompt).where(Prompt.name == prompt)).first()
        if row is None:
            known = session.exec(select(Prompt.name).order_by(col(Prompt.name)).limit(20)).all()
            raise NotFound(f"no prompt named {prompt!r}", where="the store",
                           hint=("known prompts: " + ", ".join(known)) if known else
                           "run `trimloop sync` first to pull prompts from your connectors")
        prompt_id = row.id
        assert prompt_id is not None
    config: dict[str, Any] = {"margin": margin} if margin is not None else {}
    run_id = start_run(engine=engine, settings=settings, prompt_id=prompt_id, config=config,
                       budget_calls=budget_calls, actor=ACTOR, reason="requested with `trimloop optimize`")
    me = worker_id()
    if not claim_run(engine, run_id=run_id, worker=me):
        raise Conflict(f"run {run_id} was taken by another worker", where=f"prompt {prompt}",
                       hint=f"watch it with GET /runs/{run_id}")
    gateway, starter = real_gateway(settings, engine)

    async def go() -> OptimizationRun:
        try:
            done = await execute_claimed(engine=engine, settings=settings, run_id=run_id, gateway=gateway, worker=me)
            await webhooks.announce_run(engine=engine, settings=settings, run_id=run_id)
            return done
        finally:
            await gateway.aclose()

    try:
        run = asyncio.run(go())
    finally:
        starter.stop()
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion).where(Suggestion.run_id == run_id)).first()
    if as_json:
        typer.echo(json.dumps(run_summary(prompt, run, suggestion), indent=2, default=str))
    else:
        print_run(prompt, run, suggestion, Console())
    if run.status != "succeeded":
        raise typer.Exit(1)


def run_summary(prompt: str, run: OptimizationRun, suggestion: Suggestion | None) -> dict[str, Any]:
    """The run and its suggestion as plain data (what `--json` prints)."""
    results = run.results
    out: dict[str, Any] = {"prompt": prompt, "run_id": run.id, "status": run.status, "error": run.error,
                           "calls": run.calls_made, "spent": run.spent_dollars,
                           "search_calls": results.search_calls, "certify_calls": results.certify_calls,
                           "no_suggestion": results.no_suggestion, "suggestion": None}
    if suggestion is not None:
        evidence = suggestion.evidence
        out["suggestion"] = {
            "id": suggestion.id, "model": evidence.changes.model or None,
            "lineage": [step.model_dump(mode="json") for step in evidence.lineage],
            "evaluators": {key: v.model_dump(mode="json") for key, v in evidence.evaluators.items()},
            "cost_per_call": [suggestion.baseline_cost_per_call, suggestion.candidate_cost_per_call],
            "latency_p50_s": [suggestion.baseline_latency_p50_s, suggestion.candidate_latency_p50_s],
            "projected_monthly_savings": [suggestion.savings_low, suggestion.projected_monthly_savings,
                                          suggestion.savings_high],
            "optimization_spend": suggestion.optimization_spend, "payback_days": suggestion.payback_days,
        }
    return out


def _change(suggestion: Suggestion) -> str:
    changes = suggestion.evidence.changes
    before, after = (changes.model or [None, None])[:2]
    parts = [f"model {before} → {after}"] if before != after else []
    chars = changes.template_chars
    if len(chars) == 2 and chars[0] != chars[1]:
        parts.append(f"template {chars[0]} → {chars[1]} chars")
    moves = [step.move for step in suggestion.evidence.lineage if step.move]
    if moves:
        parts.append("moves: " + ", ".join(filter(None, moves)))
    return "; ".join(parts) or "same prompt"


def verdict_line(e: Verdict) -> str:
    """"non-inferior (Δ +0.010, 90% interval [−0.020, +0.040], margin 0.02, n 120)"."""
    level = f"{100 * (1 - 2 * e.alpha):.0f}%" if e.alpha is not None else "?"
    return (f"{e.verdict} (Δ {signed(e.delta)}, {level} interval [{signed(e.lower)}, {signed(e.upper)}], "
            f"margin {e.margin}, n {e.n})")


def print_run(prompt: str, run: OptimizationRun, suggestion: Suggestion | None, out: Console) -> None:
    """A table for a suggestion; otherwise the reason there is none (or why the run failed)."""
    results = run.results
    spend = f"{money(run.spent_dollars)} in {run.calls_made} calls"
    if run.status != RunStatus.succeeded:
        out.print(f"[bold red]run {run.id} {run.status}[/]: {run.error or results.note or ''}", highlight=False)
        return
    if suggestion is None:
        out.print(results.no_suggestion or "no suggestion, because no candidate was certified", highlight=False)
        out.print(f"optimization spend: {spend}", highlight=False)
        return
    table = Table(title=f"suggestion {suggestion.id} for {prompt} (run {run.id})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("prompt", prompt)
    deadline = suggestion.evidence.deadline
    if deadline is not None and deadline.retires_on is not None:
        table.add_row("deadline", f"{deadline.model} retires on {deadline.retires_on.isoformat()}: "
                      "approve and deploy a replacement before then")
    table.add_row("change", _change(suggestion))
    for key, e in suggestion.evidence.evaluators.items():
        table.add_row(f"verdict: {key}", verdict_line(e))
    before, after = suggestion.baseline_cost_per_call, suggestion.candidate_cost_per_call
    cut = f" (−{100 * (1 - after / before):.0f}%)" if before and after is not None else ""
    table.add_row("cost per call", f"{money(before)} → {money(after)}{cut}")
    table.add_row("projected $/month", f"{money(suggestion.projected_monthly_savings)} "
                  f"[{money(suggestion.savings_low)}, {money(suggestion.savings_high)}]")
    table.add_row("optimization spend", spend)
    payback = suggestion.payback_days
    table.add_row("payback", "n/a" if payback is None else f"{payback:.1f} days")
    out.print(table)
    out.print(f"review it: GET /suggestions/{suggestion.id}", highlight=False)
