"""`trimloop health [PROMPT]`: check prompt health now (as the scheduler does after each sync),
store the verdicts, notify `prompt.unhealthy` on a change, and print each verdict with its numbers."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import col, select

from trimloop.api import services, webhooks
from trimloop.api.cli.common import settings_and_engine
from trimloop.core.db import session_scope
from trimloop.core.errors import NotFound
from trimloop.core.evidence import HealthReport
from trimloop.core.tables import Prompt

COLOURS = {"healthy": "green", "degraded": "yellow", "broken": "bold red", "unknown": "dim"}


def health(
    prompt: str = typer.Argument(None, help="one prompt's name (default: every prompt)"),
    as_json: bool = typer.Option(False, "--json", help="print the reports as JSON"),
) -> None:
    """Check the health of the production version of each prompt from its recent logs."""
    settings, engine = settings_and_engine()
    ids = None
    with session_scope(engine) as session:
        names = dict(session.exec(select(Prompt.id, Prompt.name).order_by(col(Prompt.name))).all())
    if prompt is not None:
        found = [pid for pid, name in names.items() if name == prompt]
        if not found:
            raise NotFound(f"no prompt named {prompt!r}", where="the store",
                           hint=("known prompts: " + ", ".join(list(names.values())[:20])) if names else
                           "run `trimloop sync` first to pull prompts from your connectors")
        ids = found
    outcome = services.check_health(engine=engine, settings=settings, prompt_ids=ids)
    asyncio.run(webhooks.announce_health(engine=engine, settings=settings, changes=outcome.changes))
    if as_json:
        typer.echo(json.dumps({names[pid]: r.model_dump(mode="json", exclude_none=True)
                               for pid, r in outcome.reports.items()} | {"problems": {
                                   names.get(pid, str(pid)): why for pid, why in outcome.problems.items()}},
                              indent=2))
        return
    out = Console()
    if not outcome.reports and not outcome.problems:
        out.print("no prompts yet: run `trimloop sync` first", highlight=False)
    for pid, report in outcome.reports.items():
        print_report(names[pid], report, out)
    for pid, why in outcome.problems.items():
        out.print(f"[yellow]{escape(names.get(pid, str(pid)))}: not checked: {escape(why)}[/]", highlight=False)


def print_report(name: str, report: HealthReport, out: Console) -> None:
    """The verdict and why, then a table of the judged signals."""
    colour = COLOURS.get(report.verdict, "")
    out.print(f"[bold]{escape(name)}[/]: [{colour}]{report.verdict}[/] ({report.calls} calls in "
              f"{report.window_days} days)", highlight=False)
    for reason in report.reasons:
        out.print(f"  {escape(reason)}", highlight=False)
    if not report.signals:
        return
    table = Table(show_header=True, box=None, padding=(0, 2))
    for column in ("signal", "n", "value", "95 % interval", "recent vs before", "status"):
        table.add_column(column, no_wrap=column == "signal")
    for s in report.signals:
        shown = (lambda v: "—" if v is None else f"{v:.4g}")  # noqa: E731
        trend = f"{shown(s.recent)} vs {shown(s.baseline)}" if s.recent is not None else ""
        table.add_row(s.key, str(s.n), shown(s.value), f"[{shown(s.low)}, {shown(s.high)}]", trend, s.status)
    out.print(table)
