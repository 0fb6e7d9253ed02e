"""`trimloop tokens`: create (the token is printed once), list, revoke."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from trimloop.api.cli.common import settings_and_engine
from trimloop.core import store
from trimloop.core.db import session_scope

app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
ACTOR = "cli"


@app.command("create")
def create(role: str = typer.Option(..., help="viewer, reviewer, engineer, admin, or ingest (only sends spans to POST /v1/traces)"),
           name: str = typer.Option(..., help="who or what uses it, e.g. ana or ci-bot"),
           expires_days: float | None = typer.Option(None, help="stops working this many days from now "
                                                               "(default: until revoked)")) -> None:
    """Create a token and print it once: only its SHA-256 digest is stored."""
    _, engine = settings_and_engine()
    with session_scope(engine) as session:
        token, clear = store.create_token(session=session, name=name, role=role, actor=ACTOR,
                                          expires_in_days=expires_days)
    out = Console(stderr=True)
    until = f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
    out.print(f"created token {token.id} ({token.role}) for {token.name}{until}; copy it now, it is not shown "
              "again:")
    typer.echo(clear)


@app.command("list")
def list_() -> None:
    """Every token: id, name, role, prefix, last use, expiry, revoked (never the secret)."""
    _, engine = settings_and_engine()
    with session_scope(engine) as session:
        rows = store.list_tokens(session=session)
    table = Table(title="tokens")
    for column in ("id", "name", "role", "prefix", "created", "last used", "expires", "revoked"):
        table.add_column(column)
    for t in rows:
        table.add_row(str(t.id), t.name, t.role, t.prefix, f"{t.created_at:%Y-%m-%d}",
                      f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
                      (f"{t.expires_at:%Y-%m-%d %H:%M}" + ("" if t.live() or t.revoked_at else " (expired)"))
                      if t.expires_at else "never",
                      f"{t.revoked_at:%Y-%m-%d}" if t.revoked_at else "")
    Console().print(table)


@app.command("revoke")
def revoke(token_id: int = typer.Argument(..., help="the id shown by `trimloop tokens list`")) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    _, engine = settings_and_engine()
    with session_scope(engine) as session:
        store.revoke_token(session=session, token_id=token_id, actor=ACTOR)
    typer.echo(f"revoked token {token_id}")
