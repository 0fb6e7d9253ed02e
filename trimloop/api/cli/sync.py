"""`trimloop sync`: pull prompts and logs from every configured connector, supersede and expire the
suggestions that made stale (as `POST /connectors/sync` and the scheduler do), and print the report."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trimloop.api import services
from trimloop.api.cli.common import settings_and_engine
from trimloop.connectors.sync import SyncReport
from trimloop.core.errors import ConfigError

SHOWN_PROBLEMS = 20
ACTOR = "cli"


def sync(
    connector: list[str] = typer.Option(None, "--connector", "-c", help="only these connectors"),
    full: bool = typer.Option(False, help="reread all logs, ignoring cursors (adds only what is new)"),
) -> None:
    """Pull prompt versions and call logs from the configured connectors into the store; suggestions
    whose baseline left production are superseded, and ones pending too long expire."""
    settings, engine = settings_and_engine()
    if not settings.connectors:
        raise ConfigError(
            "no connectors configured",
            where="trimloop.toml",
            hint='add one, e.g. [connectors.local] type = "files" path = "./prompt-store"',
        )
    done = services.sync(engine=engine, settings=settings, actor=ACTOR, only=connector or None, full=full)
    out = Console()
    print_reports(done.reports, out)
    print_closed(done.superseded, done.expired, out)
    print_watches(done.watches, out)
    if any(r.fatal for r in done.reports):
        raise typer.Exit(1)


def print_closed(superseded: list[int], expired: list[int], out: Console) -> None:
    """The suggestions the sync closed, if any, and why."""
    if superseded:
        out.print(f"suggestions superseded (their baseline left production): {', '.join(map(str, superseded))}",
                  highlight=False)
    if expired:
        out.print(f"suggestions expired (pending too long without a decision): {', '.join(map(str, expired))}",
                  highlight=False)


def print_watches(watches: list[Any], out: Console) -> None:
    """One line per deployed suggestion's watch: verdict, the numbers of its worst signal, the action."""
    for w in watches:
        colour = {"regressed": "red", "holding": "green"}.get(str(w.verdict), "yellow")
        worst = min(w.checks, key=lambda c: c["high"] if c.get("high") is not None else 1.0, default=None)
        numbers = (f" — {worst['signal']}: new {worst['mean_new']:.3f} vs old {worst['mean_old']:.3f}, new − old in "
                   f"[{worst['low']:+.3f}, {worst['high']:+.3f}] (n {worst['n_new']}/{worst['n_old']}, {worst['mode']})"
                   if worst and worst.get("low") is not None else "")
        action = f"; {w.action.replace('_', ' ')}" if w.action else ""
        error = f" [red]{escape(w.error)}[/]" if w.error else ""
        out.print(f"watch suggestion {w.suggestion_id}: [{colour}]{w.verdict}[/]{escape(numbers)}{action}{error}",
                  highlight=False)


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
            out.print(f"[bold red]{escape(r.connector)} failed:[/] {escape(str(r.fatal))}", highlight=False)
        if r.looked:
            out.print(f"[dim]{r.connector} looked in: {escape('; '.join(map(str, r.looked)))}[/]", highlight=False)
        for notice in r.notices:
            out.print(f"[yellow]{r.connector}: {escape(notice.where)}: {escape(notice.message)}[/]", highlight=False)
            if notice.hint:
                out.print(f"    [dim]hint: {escape(notice.hint)}[/]", highlight=False)
        for gap in r.price_gaps:
            out.print(f"[yellow]{r.connector}: price check: {escape(str(gap))}[/]", highlight=False)
            out.print("    [dim]hint: a wrong price setting? see `trimloop models list`; logged costs stay the "
                      "truth for the baseline, but projections use these prices[/]", highlight=False)
        if r.skipped:
            reasons = ", ".join(f"{reason} {n}" for reason, n in r.skipped.most_common())
            out.print(f"[yellow]{escape(r.connector)}: skipped {r.skipped_total}[/] ({escape(reasons)})", highlight=False)
            for problem in r.problems[:SHOWN_PROBLEMS]:
                out.print(f"  {escape(problem.where)}: {escape(problem.message)}", highlight=False)
                if problem.hint:
                    out.print(f"    [dim]hint: {escape(problem.hint)}[/]", highlight=False)
            if r.skipped_total > SHOWN_PROBLEMS:
                out.print(f"  … and {r.skipped_total - SHOWN_PROBLEMS} more", highlight=False)
