"""The `trimloop` command: one module per command group, wired here.

User errors print what happened, where, and how to fix it, with no traceback; exit code 1.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from trimloop.core.errors import TrimloopError

app = typer.Typer(
    name="trimloop",
    help="Proposes cheaper, faster versions of your LLM prompts, with proof that quality holds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)


def _register() -> None:
    from trimloop.api.cli import call, demo, doctor, init, models, optimize, serve, sync, tokens, worker

    app.command("demo")(demo.demo)
    app.command("init")(init.init)
    app.command("call")(call.call)
    app.add_typer(models.app, name="models")
    app.command("sync")(sync.sync)
    app.add_typer(tokens.app, name="tokens")
    app.command("serve")(serve.serve)
    app.command("optimize")(optimize.optimize)
    app.command("worker")(worker.worker)
    app.command("doctor")(doctor.doctor)


def main() -> None:
    _register()
    try:
        app()
    except TrimloopError as exc:
        where = f"{exc.where}: " if exc.where else ""
        err.print(f"[bold red]error:[/] {escape(where + exc.message)}", highlight=False)
        if exc.hint:
            err.print(f"  [yellow]hint:[/] {escape(exc.hint)}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
