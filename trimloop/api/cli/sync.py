"""`trimloop sync`: pull prompts and logs from every configured connector and print the report."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trimloop.api.cli.common import settings_and_engine
from trimloop.connectors.sync import SyncReport, sync as run_sync
from trimloop.core.errors import ConfigError

SHOWN_PROBLEMS = 20


def sync(
    connector: list[str] = typer.Option(None, "--connector", "-c", help="only these connectors"),
    full: bool = typer.Option(False, help="reread all logs, ignoring cursors (adds only what is new)"),
) -> None:
    """Pull prompt versions and call logs from the configured connectors into the store."""
    settings, engine = settings_and_engine()
    if not settings.connectors:
        raise ConfigError(
            "no connectors configured",
            where="trimloop.toml",
            hint='add one, e.g. [connectors.local] type = "files" path = "./prompt-store"',
        )
    reports = run_sync(engine=engine, settings=settings, only=connector or None, full=full)
    print_reports(reports, Console())
    if any(r.fatal for r in reports):
        raise typer.Exit(1)


def print_reports(reports: list[SyncReport], out: Console) -> None:
    """A table of counts per connector, then the skipped records with where and why."""
    table = Table(title="sync")
    for column in ("connector", "prompts +", "versions +", "labels moved", "logs +",
                   "already had", "skipped"):
        table.add_column(column, justify="left" if column == "connector" else "right")
    for r in reports:
        table.add_row(r.connector, str(r.prompts_added), str(r.versions_added), str(r.labels_changed),
                      str(r.logs_added), str(r.logs_already_synced),
                      f"[yellow]{r.skipped_total}[/]" if r.skipped_total else "0")
    out.print(table)
    for r in reports:
        if r.fatal:
            out.print(f"[bold red]{r.connector} failed:[/] {r.fatal}", highlight=False)
        if r.looked:
            out.print(f"[dim]{r.connector} looked in: {escape('; '.join(map(str, r.looked)))}[/]", highlight=False)
        for notice in r.notices:
            out.print(f"[yellow]{r.connector}: {escape(notice.where)}: {escape(notice.message)}[/]", highlight=False)
            if notice.hint:
                out.print(f"    [dim]hint: {escape(notice.hint)}[/]", highlight=False)
        if r.skipped:
            reasons = ", ".join(f"{reason} {n}" for reason, n in r.skipped.most_common())
            out.print(f"[yellow]{r.connector}: skipped {r.skipped_total}[/] ({reasons})", highlight=False)
            for problem in r.problems[:SHOWN_PROBLEMS]:
                out.print(f"  {problem.where}: {problem.message}", highlight=False)
                if problem.hint:
                    out.print(f"    [dim]hint: {problem.hint}[/]", highlight=False)
            if r.skipped_total > SHOWN_PROBLEMS:
                out.print(f"  … and {r.skipped_total - SHOWN_PROBLEMS} more", highlight=False)
