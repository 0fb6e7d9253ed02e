"""`trimloop models serve|list`: the bundled llama.cpp models and every configured model's price
and retirement date."""

from __future__ import annotations

import time
from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from trimloop.core.catalog import BUNDLED, ResolvedModel, configured_models, resolve_model
from trimloop.core.errors import ConfigError
from trimloop.core.local_models import ensure_running
from trimloop.core.retirement import today_of
from trimloop.core.settings import load_settings
from trimloop.core.tables import utcnow

app = typer.Typer(help="Serve the bundled local models; list models and their prices.", no_args_is_help=True)


@app.command("serve")
def serve(
    model: list[str] = typer.Option(list(BUNDLED), "--model", "-m", help="bundled model ids to serve"),
) -> None:
    """Run llama.cpp's OpenAI-compatible server for the bundled models until Ctrl-C."""
    settings = load_settings()
    out = Console()
    with ensure_running(settings, model) as servers:
        for server in servers:
            note = "started" if server.process else "already running"
            out.print(f"{server.model_id}: {server.base_url}/v1 ({note})")
        if not any(s.process for s in servers):
            return
        out.print("serving; press Ctrl-C to stop")
        try:
            while all(s.process is None or s.process.poll() is None for s in servers):
                time.sleep(1)
        except KeyboardInterrupt:
            out.print("stopping")


@app.command("list")
def list_models(
    classes: bool = typer.Option(False, "--classes", help="every token class's price and source, per model"),
    model_ids: list[str] = typer.Option([], "--model", "-m", help="also show these models (e.g. gpt-5-mini), "
                                        "configured or not"),
    today: datetime = typer.Option(None, "--today", formats=["%Y-%m-%d"],
                                   help="count days to retirement from this day (default: today, UTC)"),
) -> None:
    """Every configured model, its price per million tokens and where the price came from, and
    the day its provider retires it (litellm's deprecation_date, or `retires_on` in settings)."""
    settings = load_settings()
    day = today.date() if today is not None else today_of(utcnow())
    table = Table("model", "route", "$/M in", "$/M cached", "$/M out", "price source", "retires", "notes")
    local = settings.local_models
    models: list[ResolvedModel] = configured_models(settings)
    for model_id in model_ids:
        if model_id not in {m.id for m in models}:
            try:
                models.append(resolve_model(settings, model_id))
            except ConfigError as exc:
                raise typer.BadParameter(f"{exc.message}; {exc.hint}" if exc.hint else exc.message,
                                         param_hint="--model") from None
    for model in models:
        notes = []
        if model.id in BUNDLED:
            notes.append(BUNDLED[model.id].note)
        if model.completion_only and model.id not in BUNDLED:
            notes.append("completion-style templates only")
        if model.prices.tiers:
            notes.append("; ".join(f"above {t.above:,} prompt tokens: ${t.input * 1e6:.6g}/M in" for t in model.prices.tiers))
        table.add_row(
            model.id,
            f"{model.route} ({model.api_base})" if model.api_base else model.route,
            model.prices.input.per_mtok(),
            model.prices.cache_read.per_mtok(),
            model.prices.output.per_mtok(),
            "notional estimate (see below)" if model.id in BUNDLED else model.price_source,
            _retires(model, day, settings.retirement_warning_days),
            "; ".join(notes),
        )
    out = Console()
    out.print(table)
    if classes:
        detail = Table("model", "token class", "$/M", "source")
        for model in models:
            for name, rate in model.prices.rates().items():
                detail.add_row(model.id, name, rate.per_mtok(), rate.source)
            for tier in model.prices.tiers:
                detail.add_row(model.id, f"above {tier.above:,} tokens (input)", f"{tier.input * 1e6:.6g}", tier.source)
        out.print(detail)
    out.print(
        f"Bundled models are priced at a notional self-hosting rate: "
        f"${local.usd_per_mtok_per_bparam_input} (input) and ${local.usd_per_mtok_per_bparam_output} "
        "(output) per 1M tokens per billion parameters; set local_models.usd_per_mtok_per_bparam_*. "
        "Per-class prices (cache_read_per_mtok, cache_write_per_mtok, reasoning_per_mtok, batch_*_per_mtok, "
        "long_context_*) can be set under [models.\"ID\"]; --classes shows each price's source.",
        highlight=False,
    )


def _retires(model: ResolvedModel, today: object, warning_days: int) -> str:
    """"2026-12-11 (in 10 days, retiring; litellm price map)", or "—" when no date is known."""
    if model.retires_on is None:
        return "—"
    left = (model.retires_on - today).days  # type: ignore[operator]
    when = f"in {left} days" if left >= 0 else f"{-left} days ago"
    flag = ", retiring" if left <= warning_days else ""
    source = "settings" if model.retires_source.startswith("settings") else "litellm price map"
    return f"{model.retires_on.isoformat()} ({when}{flag}; {source})"
