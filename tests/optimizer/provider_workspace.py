"""A files-connector workspace whose models live on the fake OpenAI server (trimloop.testing.fake_openai):
the `sentiment` prompt (verbose few-shot, on the pricey `fake/big`, labelled production), 200 logs
whose outputs are the gold labels, and the cheap `fake/small` as the only candidate model. The fake
server answers every review with its gold label (reply rules), so a cheaper candidate is as good
as the baseline and certification can pass.

Shared by the crash-and-resume and provider-fault tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.api.test_end_to_end import log_lines
from trimloop.core.settings import Settings
from trimloop.core.tables import utcnow
from trimloop.testing.sentiment import REPLIES, VERBOSE

PRICES = {"fake/big": (50.0, 100.0), "fake/small": (5.0, 10.0)}  # $ per 1M input / output tokens
PARAMS = {"max_tokens": 3, "temperature": 0}


def server_args(tmp: Path, *extra: str) -> list[str]:
    """Arguments for `fake_openai.running`: token counting, per-body counts, gold-label replies."""
    rules = tmp / "replies.json"
    rules.write_text(json.dumps(REPLIES))
    return ["--count-tokens", "--track-bodies", "--replies", str(rules), *extra]


def write_store(folder: Path) -> Path:
    """prompts/sentiment/1.md on fake/big (production) and 200 logs in logs/june.jsonl."""
    (folder / "prompts" / "sentiment").mkdir(parents=True)
    (folder / "logs").mkdir()
    front = yaml.safe_dump({"model": "fake/big", "params": PARAMS, "labels": ["production"]})
    (folder / "prompts" / "sentiment" / "1.md").write_text(f"---\n{front}---\n{VERBOSE}\n")
    pricing = Settings(models=models_config("http://127.0.0.1:9"))
    (folder / "logs" / "june.jsonl").write_text(
        log_lines(pricing, "1", "fake/big", utcnow() - timedelta(days=27), 200))
    return folder


def models_config(url: str, scale: float = 1.0) -> dict[str, dict[str, Any]]:
    """Both models at the fake server, at PRICES × `scale`."""
    return {model: {"api_base": f"{url}/v1", "input_per_mtok": i * scale, "output_per_mtok": o * scale}
            for model, (i, o) in PRICES.items()}


def prompt_config(**overrides: Any) -> dict[str, Any]:
    return {"rungs": [8, 24], "dataset_size": 200, "holdout_fraction": 0.6, "margin": 0.05,
            "models": ["fake/small"], "concurrency": 4} | overrides


def paid_at_provider(url: str) -> dict[str, dict[str, Any]]:
    """Per distinct request body, what the fake provider saw: received / answered / failed / abandoned."""
    return httpx.get(f"{url}/_stats", params={"bodies": 1}, timeout=10).json()["bodies"]


def billed(bodies: dict[str, dict[str, Any]], settings: Settings) -> tuple[int, float]:
    """(answers, dollars) the provider would bill: every answer delivered, at the model's price."""
    from trimloop.core.catalog import resolve_model

    wire = {resolve_model(settings, m).wire_model: m for m in PRICES}
    calls, dollars = 0, 0.0
    for body in bodies.values():
        for answer in body["answers"]:
            calls += 1
            dollars += resolve_model(settings, wire[answer["model"]]).price(answer["prompt_tokens"],
                                                                            answer["completion_tokens"])
    return calls, dollars


def poll_until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """`check()`'s first truthy value, polled every 50 ms; an AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
