"""Create the demo workspace (files connector) and produce its production logs for real.

Logs come from actually running each prompt through the bundled models on the demo's inputs,
with timestamps spread over the last 28 days, so traffic and cost figures mean something. Each
log carries the input's correct answer as reviewer feedback (`expected`), the way a team's
corrected labels arrive in production; the demo's evaluators compare accuracy against it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from trimloop.api.demo.data import orders, reviews, tickets
from trimloop.api.demo.prompts import PROMPTS
from trimloop.core.defaults import DEFAULT_MARGIN
from trimloop.core.gateway import Gateway
from trimloop.core.tables import utcnow
from trimloop.core.templates import Template, render

CONFIG = """\
# The trimloop demo workspace. `cd` here and run `trimloop serve`, `trimloop sync`,
# `trimloop optimize NAME` as you like.
home = ".trimloop"

[connectors.demo]
type = "files"
path = "store"

# The demo's holdouts are ~65-120 items, so it certifies at a 5-point margin; with a few thousand
# logged calls, the default of {default_margin:g} is within reach. Two candidates are tested on the
# holdout (certify_top), each at alpha 0.05 / 2: a label prompt needs at least 73 holdout items.
[prompts.movie-sentiment]
evaluators = {{label = {{labels = ["positive", "negative"]}}}}
expected_from = "expected"
{common}

[prompts.ticket-router]
evaluators = {{label = {{labels = ["billing", "bug", "account", "shipping"]}}}}
expected_from = "expected"
{common}

[prompts.order-extract]
evaluators = ["json_fields"]
expected_from = "expected"
{common}
"""
COMMON = """margin = 0.05
holdout_fraction = 0.65
rungs = [10, 30, 60]
max_candidates = 8
certify_top = 2
budget_calls = 600"""


@dataclass(frozen=True)
class DemoPrompt:
    name: str
    variable: str
    inputs: list[tuple[dict[str, str], str]]


def demo_prompts(scale: float = 1.0) -> list[DemoPrompt]:
    return [
        DemoPrompt("movie-sentiment", "review", reviews(max(20, int(200 * scale)))),
        DemoPrompt("ticket-router", "ticket", tickets(max(20, int(160 * scale)))),
        DemoPrompt("order-extract", "note", orders(max(20, int(100 * scale)))),
    ]


def create(folder: Path) -> None:
    """Write trimloop.toml and the prompt store (keeps what a previous demo left)."""
    (folder / "store" / "prompts").mkdir(parents=True, exist_ok=True)
    (folder / "store" / "logs").mkdir(parents=True, exist_ok=True)
    (folder / "trimloop.toml").write_text(CONFIG.format(common=COMMON, default_margin=DEFAULT_MARGIN), encoding="utf-8")
    for name, text in PROMPTS.items():
        path = folder / "store" / "prompts" / name / "1.md"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n", encoding="utf-8")


def parse(text: str) -> tuple[Template, str, dict]:
    """(template, model, params) of one of the demo's prompt files."""
    import yaml

    _, front, body = text.split("---", 2)
    meta = yaml.safe_load(front)
    return Template.plain(body.strip("\n")), meta["model"], dict(meta.get("params") or {})


async def produce_logs(folder: Path, gateway: Gateway, prompts: list[DemoPrompt],
                       progress: Callable[[str, int, int], None], now: datetime | None = None) -> int:
    """Run every prompt on its inputs through the gateway; write store/logs/demo.jsonl."""
    now = now or utcnow()
    lines: list[str] = []
    for prompt in prompts:
        template, model, params = parse(PROMPTS[prompt.name])
        done = 0
        limit = asyncio.Semaphore(2)

        async def one(i: int, inputs: dict[str, str], expected: str) -> str:
            nonlocal done
            async with limit:
                result = await gateway.call(model, text=render(template, inputs), params=params)  # type: ignore[arg-type]
            done += 1
            progress(prompt.name, done, len(prompt.inputs))
            # Spread the calls over the last 28 days, oldest first.
            called_at = now - timedelta(days=28) + timedelta(seconds=(i + 0.5) * 28 * 86400 / len(prompt.inputs))
            return json.dumps({
                "id": f"demo-{prompt.name}-{i}", "prompt": prompt.name, "version": "1", "inputs": inputs,
                "output": result.output, "model": model, "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens, "cost": result.cost, "latency_s": round(result.latency_s, 4),
                "called_at": called_at.isoformat(),
                "feedback": [{"name": "expected", "value": expected, "source": "reviewer"}],
            })

        lines += await asyncio.gather(*[one(i, inputs, expected) for i, (inputs, expected) in enumerate(prompt.inputs)])
    path = folder / "store" / "logs" / "demo.jsonl"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return len(lines)
