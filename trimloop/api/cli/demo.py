"""`trimloop demo`: the main job in one command, on the bundled models, with no API key.

workspace → production logs (really produced by the bundled models) → sync → optimize every
prompt → a table of suggestions (or why there is none) → the web UI with a one-time login token.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlmodel import select

from trimloop.api import services, webhooks
from trimloop.api.cli.common import money, signed
from trimloop.api.demo import workspace
from trimloop.api.executor import real_gateway
from trimloop.api.services import start_run
from trimloop.core.db import get_engine, session_scope, upgrade
from trimloop.core.errors import Conflict
from trimloop.core.settings import get_settings, load_settings
from trimloop.core.tables import OptimizationRun, Prompt, Suggestion
from trimloop.optimizer.queue import claim_run, execute_claimed, worker_id

ACTOR = "trimloop demo"  # who the audit log says queued the demo's runs


def demo(
    folder: Path = typer.Option(Path("trimloop-demo"), "--dir", help="workspace folder (created or reused)"),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="start the web UI at the end"),
    port: int = typer.Option(8000, help="web UI port"),
    scale: float = typer.Option(1.0, min=0.1, max=10.0, help="inputs per prompt, relative to the default"),
) -> None:
    """Create a demo workspace, produce real logs, sync, optimize every prompt, then serve the UI."""
    out = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the whole table
    started = time.monotonic()
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    workspace.create(folder)
    os.chdir(folder)
    os.environ["TRIMLOOP_CONFIG"] = str(folder / "trimloop.toml")
    get_settings.cache_clear()
    settings = load_settings()
    upgrade(settings.db_url)
    engine = get_engine(settings)
    out.print(f"[bold]trimloop demo[/] in {escape(str(folder))}")

    prompts = workspace.demo_prompts(scale)
    logs = folder / "store" / "logs" / "demo.jsonl"
    expected = sum(len(p.inputs) for p in prompts)
    gateway, starter = real_gateway(settings, engine)
    try:
        if logs.exists() and sum(1 for _ in logs.open(encoding="utf-8")) == expected:
            out.print(f"production logs: reusing {expected} calls in store/logs/demo.jsonl")
        else:
            with _bars(out) as bars:
                tasks = {p.name: bars.add_task(f"logs: {p.name}", total=len(p.inputs)) for p in prompts}
                produce = workspace.produce_logs(
                    folder, gateway, prompts, lambda name, done, total: bars.update(tasks[name], completed=done))
                asyncio.run(_closing(produce, gateway))
                gateway = gateway.for_another_loop()  # for the next event loop; the same model servers
        for report in services.sync(engine=engine, settings=settings, actor=ACTOR).reports:
            problems = f", {report.skipped_total} skipped" if report.skipped_total else ""
            out.print(f"sync {report.connector}: {report.prompts_added} prompts, {report.versions_added} versions, "
                      f"{report.logs_added} new logs ({report.logs_already_synced} already there){problems}")
            if report.fatal:
                out.print(f"[red]{escape(report.fatal)}[/]")
        rows = []
        for prompt in prompts:
            rows.append(_optimize(out, engine, settings, prompt.name, gateway))
            gateway = gateway.for_another_loop()
    finally:
        starter.stop()
    _table(out, rows)
    out.print(f"demo finished in {time.monotonic() - started:.0f} s")
    if serve:
        _serve(out, settings, engine, port)


async def _closing(work, gateway):  # type: ignore[no-untyped-def]
    try:
        return await work
    finally:
        await gateway.aclose()


def _bars(out: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=out, transient=False)


def _optimize(out: Console, engine, settings, name: str, gateway):  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        prompt = session.exec(select(Prompt).where(Prompt.name == name)).one()
        pending = session.exec(select(Suggestion).where(Suggestion.prompt_id == prompt.id,
                                                        Suggestion.status == "pending")).first()
        prompt_id = prompt.id
        if pending is not None:
            run = session.get(OptimizationRun, pending.run_id)
            out.print(f"{name}: suggestion {pending.id} from run {pending.run_id} is still pending review")
            return name, run, pending
    try:
        run_id: int | None = start_run(engine=engine, settings=settings, prompt_id=prompt_id, actor=ACTOR,
                                       reason="trimloop demo")
    except Conflict:
        run_id = None
    me = worker_id()
    if run_id is None or not claim_run(engine, run_id=run_id, worker=me):
        out.print(f"[yellow]{name}: another run is in progress; skipped[/]")
        return name, None, None
    budget = settings.prompts.get(name, {}).get("budget_calls", 2000)
    done = threading.Event()
    with _bars(out) as bars:
        task = bars.add_task(f"optimize: {name}", total=budget)

        def watch() -> None:
            while not done.wait(0.5):
                with session_scope(engine) as session:
                    run = session.get(OptimizationRun, run_id)
                    bars.update(task, completed=run.calls_made if run else 0)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            run = asyncio.run(_closing(execute_claimed(engine=engine, settings=settings, run_id=run_id,
                                                       gateway=gateway, worker=me), gateway))
        finally:
            done.set()
            watcher.join()
        bars.update(task, completed=run.calls_made, total=max(run.calls_made, 1))
    asyncio.run(webhooks.announce_run(engine=engine, settings=settings, run_id=run_id))
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion).where(Suggestion.run_id == run_id)).first()
    return name, run, suggestion


def _table(out: Console, rows) -> None:  # type: ignore[no-untyped-def]
    table = Table(title="trimloop suggestions", show_lines=True)
    for column in ("prompt", "change", "quality verdict", "cost/call before → after", "projected $/month",
                   "optimization spend", "payback"):
        table.add_column(column)
    reasons = []
    for name, run, suggestion in rows:
        if run is None:
            continue
        if suggestion is None:
            reasons.append(f"{name}: {run.results.outcome(run.status, run.error)}")
            table.add_row(name, "no suggestion", "—", "—", "—", f"{money(run.spent_dollars)} ({run.calls_made} calls)", "—")
            continue
        ev = suggestion.evidence
        verdicts = "; ".join(
            f"{k}: {e.verdict} Δ {signed(e.delta)} [{signed(e.lower)}, {signed(e.upper)}] n={e.n}"
            for k, e in ev.evaluators.items())
        lineage = ", ".join(step.detail for step in ev.lineage)
        before, after = suggestion.baseline_cost_per_call or 0, suggestion.candidate_cost_per_call or 0
        cut = f" (−{100 * (1 - after / before):.0f} %)" if before else ""
        payback = "n/a" if suggestion.payback_days is None else f"{suggestion.payback_days:.1f} days"
        table.add_row(name, lineage, verdicts, f"{money(before)} → {money(after)}{cut}",
                      f"{money(suggestion.projected_monthly_savings)} [{money(suggestion.savings_low)}, "
                      f"{money(suggestion.savings_high)}]",
                      f"{money(suggestion.optimization_spend)} ({run.calls_made} calls)", payback)
    out.print(table)
    out.print("Costs are notional self-hosting estimates for the bundled models (see `trimloop models list`).",
              highlight=False)
    for reason in reasons:
        out.print(escape(reason), highlight=False)


def _serve(out: Console, settings, engine, port: int) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    from trimloop.api.app import create_app
    from trimloop.core.store import create_token

    with session_scope(engine) as session:
        _, secret = create_token(session=session, name=f"demo-{int(time.time())}", role="admin", actor="trimloop demo")
    host = settings.api.host
    out.print(f"\n[bold]web UI:[/] http://{host}:{port}/   (REST API: http://{host}:{port}/openapi.json with "
              "the token as a Bearer header; see docs/api.md)")
    out.print(f"[bold]one-time login token[/] (admin; shown only now): {secret}")
    out.print("press Ctrl-C to stop")
    uvicorn.run(create_app(settings, engine), host=host, port=port, log_level="warning")
