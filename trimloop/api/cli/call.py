"""`trimloop call MODEL TEXT`: one call through the gateway, with tokens, cost, latency, cache hit."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console

from trimloop.api.cli.common import money, settings_and_engine
from trimloop.core.gateway import CallResult, Gateway
from trimloop.core.local_models import LazyStarter


def call(
    model: str = typer.Argument(..., help="e.g. local/smollm2-135m, local/gemma3-270m, gpt-4o-mini"),
    text: str = typer.Argument(..., help="the user message (or the plain text for a base model)"),
    system: str | None = typer.Option(None, help="a system message (chat models)"),
    max_tokens: int = typer.Option(64, min=1, help="most tokens to generate"),
    temperature: float = typer.Option(0.0, min=0.0, max=2.0),
    seed: int | None = typer.Option(None, help="sampling seed (part of the cache key)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="skip the response cache"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Make one LLM call through the gateway (starting a bundled model if it is not running)."""
    settings, engine = settings_and_engine()
    starter = LazyStarter(settings)
    gateway = Gateway(settings, engine=engine, cache=not no_cache, before_first_call=starter)
    resolved = gateway.model(model)
    params = {"max_tokens": max_tokens, "temperature": temperature}

    async def run() -> CallResult:
        try:
            if resolved.completion_only:
                prefix = f"{system}\n\n" if system else ""
                return await gateway.call(model, text=prefix + text, params=params, seed=seed)
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": text}
            ]
            return await gateway.call(model, messages=messages, params=params, seed=seed)
        finally:
            await gateway.aclose()

    with starter:
        result = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps({
            "output": result.output, "model": result.model, "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens, "cost": result.cost, "spent": result.spent,
            "cost_is_estimate": result.cost_is_estimate, "latency_s": result.latency_s,
            "cached": result.cached, "cached_tokens": result.cached_tokens,
            "cache_write_tokens": result.cache_write_tokens, "reasoning_tokens": result.reasoning_tokens,
        }))
        return
    out = Console()
    out.print(result.output, highlight=False, markup=False)
    estimate = " (estimate)" if result.cost_is_estimate else ""
    cache = "cache hit, spent $0" if result.cached else f"spent {money(result.spent)}"
    out.print(
        f"[dim]{result.model} · {result.input_tokens} in / {result.output_tokens} out tokens · "
        f"cost {'unknown (no price)' if result.cost is None else money(result.cost)}{estimate} · {result.latency_s * 1000:.0f} ms · {cache}[/]"
    )
