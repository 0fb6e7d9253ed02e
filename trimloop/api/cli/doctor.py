"""`trimloop doctor`: check the workspace (config, database, allowed hosts, connectors, prices,
bundled models, prompts) and say what to fix. Exit code 1 on any problem, so CI can run it."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trimloop.api.doctor import DEFAULT_MAX_LOGS, DoctorReport, diagnose_workspace

MARKS = {"ok": "[green]ok[/]     ", "warning": "[yellow]warning[/]", "problem": "[bold red]problem[/]"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="print the findings as JSON"),
    start_models: bool = typer.Option(False, "--start-models", help="start each bundled model once (slow)"),
    full: bool = typer.Option(False, help="read every connector's logs from the start, not from the last sync"),
    max_logs: int = typer.Option(DEFAULT_MAX_LOGS, min=1, help="stop reading a connector's logs after this many"),
) -> None:
    """Check the workspace and say what to fix: each finding is ok, a warning or a problem, with the
    fix. Changes nothing (no migration, no sync, no LLM call)."""
    report = diagnose_workspace(start_models=start_models, full=full, max_logs=max_logs)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print_report(report, Console(highlight=False))
    raise typer.Exit(report.exit_code)


def print_report(report: DoctorReport, out: Console) -> None:
    """Sections in order, each finding with its level, and its fix below it."""
    for section in report.sections:
        out.print(f"\n[bold]{escape(section.title)}[/]")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for finding in section.findings:
            text = escape(finding.message)
            if finding.fix and finding.level != "ok":
                text += "\n[dim]fix: " + escape(finding.fix).replace("\n", "\n     ") + "[/]"
            grid.add_row(f"  {MARKS[finding.level]}", text)
        out.print(grid)
    counts = report.counts
    verdict = {"ok": "[green]ready[/]", "warning": "[yellow]ready, with warnings[/]",
               "problem": "[bold red]not ready[/]"}[report.level]
    out.print(f"\n{verdict}: {counts['problem']} problem(s), {counts['warning']} warning(s), {counts['ok']} ok")
