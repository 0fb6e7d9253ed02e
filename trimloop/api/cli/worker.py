"""`trimloop worker`: sync, then optimize every due prompt, on a schedule (or once with --once)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

import typer
from rich.console import Console
from rich.table import Table

from trimloop.api.cli.common import money, settings_and_engine
from trimloop.api.executor import real_gateway
from trimloop.api.scheduler import PassReport, Worker, build_scheduler


def worker(
    once: bool = typer.Option(False, "--once", help="one pass (sync → due → claim → execute), then exit"),
    no_sync: bool = typer.Option(False, "--no-sync", help="skip the connectors' sync"),
    as_json: bool = typer.Option(False, "--json", help="with --once: print the pass as JSON"),
) -> None:
    """Run the scheduler: every `scheduler.interval_minutes`, sync and optimize the prompts that are due."""
    settings, engine = settings_and_engine()
    out = Console()
    if once:
        gateway, starter = real_gateway(settings, engine)

        async def one_pass() -> PassReport:
            try:
                return await Worker(engine=engine, settings=settings, gateway=gateway).run_pass(do_sync=not no_sync)
            finally:
                await gateway.aclose()

        try:
            report = asyncio.run(one_pass())
        finally:
            starter.stop()
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
        else:
            print_pass(report, out)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")  # each pass's summary
    scheduler = build_scheduler(engine=engine, settings=settings)
    scheduler.start()
    minutes = settings.scheduler.interval_minutes
    out.print(f"worker started: a pass now, then every {minutes:g} minutes (Ctrl-C to stop)", highlight=False)
    stop = threading.Event()
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        out.print("stopping after the current pass …")
    finally:
        scheduler.shutdown(wait=True)


def print_pass(report: PassReport, out: Console) -> None:
    """Due decisions with reasons, then what each executed run produced."""
    from trimloop.api.cli.sync import print_closed, print_reports

    if report.synced:
        print_reports(report.synced, out)
    print_closed(report.superseded, report.expired, out)
    if not report.decisions:
        out.print("no prompts in the store: configure a connector and run `trimloop sync`", highlight=False)
        return
    table = Table(title="due prompts")
    for column in ("prompt", "due", "reason"):
        table.add_column(column)
    for d in report.decisions:
        table.add_row(d.prompt_name, "[green]yes[/]" if d.due else "no", d.reason)
    out.print(table)
    for line in report.notified:
        out.print(f"model.retiring sent: {line}", highlight=False, markup=False)
    if not report.executed:
        out.print("nothing to run", highlight=False)
        return
    runs = Table(title="runs")
    for column in ("run", "prompt id", "status", "calls", "spent", "result"):
        runs.add_column(column)
    for r in report.executed:
        first_error_line = (r.error or "").split("\n", 1)[0]
        outcome = (f"suggestion {r.results.suggestion_id}" if r.results.suggestion_id
                   else r.results.no_suggestion or first_error_line)
        runs.add_row(str(r.id), str(r.prompt_id), r.status, str(r.calls_made), money(r.spent_dollars), str(outcome))
    out.print(runs)
