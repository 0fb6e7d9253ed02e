"""`trimloop optimize PROMPT`: run one optimization now and show the suggestion, or why there is none."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import col, select

from trimloop.api import webhooks
from trimloop.api.cli.common import money, settings_and_engine, signed
from trimloop.api.executor import real_gateway
from trimloop.api.services import start_run
from trimloop.core.db import session_scope
from trimloop.core.defaults import DEFAULT_MARGIN, DEFAULT_MIN_EFFECT
from trimloop.core.errors import Conflict, NotFound
from trimloop.core.evidence import PreflightFinding, Verdict
from trimloop.core.status import RunStatus
from trimloop.core.tables import OptimizationRun, Prompt, Suggestion
from trimloop.optimizer.config import RunConfig
from trimloop.optimizer.queue import claim_run, execute_claimed, worker_id

ACTOR = "cli"


def optimize(
    prompt: str = typer.Argument(..., help="the prompt's name, as `trimloop sync` stored it"),
    budget_calls: int = typer.Option(None, "--budget-calls", min=1,
                                     help=f"cap on LLM calls (default {RunConfig.model_fields['budget_calls'].default})"),
    margin: float = typer.Option(None, "--margin", min=0, max=0.99,
                                 help=f"non-inferiority margin (default {DEFAULT_MARGIN:g})"),
    force: bool = typer.Option(False, "--force", help="search even when the baseline is broken (prompt health)"),
    repair: bool = typer.Option(False, "--repair", help="search for a repair (better quality, at any cost) instead "
                                "of a cheaper version; certified by the superiority test"),
    min_effect: float = typer.Option(None, "--min-effect", min=0.001, max=0.99,
                                     help=f"a repair's minimum gain on every evaluator (default {DEFAULT_MIN_EFFECT:g})"),
    as_json: bool = typer.Option(False, "--json", help="print the run and suggestion as JSON"),
) -> None:
    """Search for a cheaper version of PROMPT now, certify it on the holdout, and print the verdict.

    A run whose baseline is broken (it does worse than always giving the most common gold label, or
    most answers fail their format) ends `baseline_unhealthy` without searching, unless --force.
    With --repair it searches for a better version instead (answer format stated, other and stronger
    models, rewrites), at any cost, and suggests it only when the superiority test shows it better
    by at least --min-effect on every evaluator."""
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
    if force:
        config["force"] = True
    if repair:
        config["repair"] = True
    if min_effect is not None:
        config["min_effect"] = min_effect
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
                           "no_suggestion": results.no_suggestion, "outcome": results.outcome(run.status, run.error),
                           "findings": [f.model_dump(mode="json") for f in results.findings], "suggestion": None,
                           "baseline_health": results.baseline_health.model_dump(mode="json", exclude_none=True,
                                                                                  exclude={"signals"})
                           if results.baseline_health else None,
                           "repair": results.repair.model_dump(mode="json", exclude_none=True)
                           if results.repair else None}
    if suggestion is not None:
        evidence = suggestion.evidence
        out["suggestion"] = {
            "id": suggestion.id, "kind": suggestion.kind, "objective": suggestion.objective,
            "claim": suggestion.claim, "model": evidence.changes.model or None,
            "latency": suggestion.latency.model_dump(mode="json", exclude_none=True) if suggestion.latency else None,
            "repair": evidence.repair.model_dump(mode="json", exclude_none=True) if evidence.repair else None,
            "lineage": [step.model_dump(mode="json") for step in evidence.lineage],
            "evaluators": {key: v.model_dump(mode="json") for key, v in evidence.evaluators.items()},
            "cost_per_call": [suggestion.baseline_cost_per_call, suggestion.candidate_cost_per_call],
            "latency_p50_s": [suggestion.baseline_latency_p50_s, suggestion.candidate_latency_p50_s],
            "projected_monthly_savings": [suggestion.savings_low, suggestion.projected_monthly_savings,
                                          suggestion.savings_high],
            "optimization_spend": suggestion.optimization_spend, "payback_days": suggestion.payback_days,
        }
    return out


def print_findings(findings: list[PreflightFinding], out: Console) -> None:
    """The preflight's problems and warnings, each with its fix (what is fine is left out)."""
    for f in findings:
        if f.level == "ok":
            continue
        colour = "red" if f.level == "problem" else "yellow"
        out.print(f"[bold {colour}]{f.level}[/] {escape(f.message)}", highlight=False)
        if f.fix:
            out.print("  fix: " + escape(f.fix).replace("\n", "\n       "), highlight=False)


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
    """"non-inferior (Δ +0.010, 90% interval [−0.020, +0.040], margin 0.02, n 120)"; a repair's
    "superior (Δ +0.420, …, min effect 0.05, n 144)"."""
    level = f"{100 * (1 - 2 * e.alpha):.0f}%" if e.alpha is not None else "?"
    bound = f"min effect {e.min_effect:g}" if e.test == "superiority" and e.min_effect is not None else f"margin {e.margin}"
    return (f"{e.verdict} (Δ {signed(e.delta)}, {level} interval [{signed(e.lower)}, {signed(e.upper)}], "
            f"{bound}, n {e.n})")


def print_run(prompt: str, run: OptimizationRun, suggestion: Suggestion | None, out: Console) -> None:
    """The run's outcome in one line, then a table for a suggestion, or the reason there is none (or
    why the run failed); the preflight's problems (with their fixes) and warnings after it."""
    results = run.results
    spend = f"{money(run.spent_dollars)} in {run.calls_made} calls"
    if run.status == RunStatus.baseline_unhealthy:
        out.print(f"[bold red]run {run.id} baseline_unhealthy[/]: {escape(results.no_suggestion or '')}", highlight=False)
        out.print(f"search calls: {results.search_calls or 0}; spend: {spend}", highlight=False)
        return
    if run.status == RunStatus.blocked:
        out.print(f"[bold red]run {run.id} blocked[/] before any spending:", highlight=False)
        print_findings(results.findings, out)
        return
    if run.status != RunStatus.succeeded:
        out.print(f"[bold red]run {run.id} {run.status}[/]: {escape(run.error or results.note or '')}", highlight=False)
        return
    out.print(f"[bold]run {run.id}[/]: {escape(results.outcome(run.status, run.error))}", highlight=False)
    print_findings(results.findings, out)
    if suggestion is None:
        out.print(f"optimization spend: {spend}", highlight=False)
        return
    table = Table(title=f"suggestion {suggestion.id} for {prompt} (run {run.id})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("prompt", prompt)
    table.add_row("objective", f"{suggestion.objective}: {suggestion.claim}")
    if suggestion.kind == "repair":
        table.add_row("kind", "repair: better quality, certified by the superiority test (the cost may rise)")
    deadline = suggestion.evidence.deadline
    if deadline is not None and deadline.retires_on is not None:
        table.add_row("deadline", f"{deadline.model} retires on {deadline.retires_on.isoformat()}: "
                      "approve and deploy a replacement before then")
    table.add_row("change", _change(suggestion))
    for key, e in suggestion.evidence.evaluators.items():
        table.add_row(f"verdict: {key}", verdict_line(e))
    before, after = suggestion.baseline_cost_per_call, suggestion.candidate_cost_per_call
    cut = f" ({'+' if after >= before else '−'}{abs(100 * (after / before - 1)):.0f}%)" if before and after is not None else ""
    table.add_row("cost per call", f"{money(before)} → {money(after)}{cut}")
    claim = suggestion.latency
    if claim is not None and None not in (claim.before_s, claim.after_s, claim.ratio, claim.ratio_upper):
        table.add_row(f"latency {claim.stat}", f"{claim.before_s:.3g} s → {claim.after_s:.3g} s (×{claim.ratio:.2f}, "
                      f"upper bound ×{claim.ratio_upper:.2f}, n {claim.n}; fresh paired calls against the control)")
    if claim is not None and claim.ttft_p50_s and claim.ttft_p95_s:
        (b50, a50), (b95, a95) = claim.ttft_p50_s, claim.ttft_p95_s
        table.add_row("time to first token", f"p50 {b50:.3g} s → {a50:.3g} s, p95 {b95:.3g} s → {a95:.3g} s "
                      f"(streamed calls, n {claim.ttft_n})")
    table.add_row("projected $/month", f"{money(suggestion.projected_monthly_savings)} "
                  f"[{money(suggestion.savings_low)}, {money(suggestion.savings_high)}]")
    table.add_row("optimization spend", spend)
    payback = suggestion.payback_days
    table.add_row("payback", "n/a" if payback is None else f"{payback:.1f} days")
    out.print(table)
    out.print(f"review it: GET /suggestions/{suggestion.id}", highlight=False)
