"""Projected savings against provider-billed replays, for a prompt whose long system prompt is cached.

    python -m bench.savings [--days 28] [--calls-per-day 400] [--seed 0] [--fresh]

A support-triage prompt on gpt-4.1-mini with a ~2,000-token static system prompt runs for `--days`
of diurnal traffic (about one call every few minutes). Every call is billed the way OpenAI bills it:
the provider's prompt cache (`trimloop.testing.provider_cache`: prefixes of ≥ 1,024 tokens in
128-token steps, kept 5 minutes after last use) decides the cached tokens, and the bill is
uncached × input + cached × cached-input + output × output at litellm's list prices. Those billed
calls are the baseline's logs.

Three candidates, each projected by trimloop (the run's code path: `optimizer.caching` learns the
hit rate from the logs and prices a 100-item holdout, `optimizer.savings.project` projects), then
replayed call by call on the same traffic through a fresh provider cache to see what they really
save (with `--fresh`, on new traffic from another seed: the weeks after deployment, which adds the
period-to-period change in volume and hit rate to the error):

- keeps_prefix: the system prompt cut to ~1,500 tokens — still cached;
- under_minimum: cut to ~800 tokens — under the 1,024-token minimum, never cached;
- other_model: the same prompt on gpt-4.1-nano.

Prints {"candidates": {NAME: {"projected_monthly", "replayed_monthly", "error", "naive_error", …}}}:
monthly savings in USD; error = projected ÷ replayed − 1 (target within ±0.05); naive_error the same
for the projection at tokens × list price (what trimloop projected before it knew the cache).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from trimloop.core.catalog import import_litellm, resolve_model
from trimloop.core.defaults import DAYS_PER_MONTH
from trimloop.core.pricing import cache_rule
from trimloop.core.settings import Settings
from trimloop.core.templates import Template, render
from trimloop.optimizer.caching import CacheModel, CacheTraffic, price_pairs
from trimloop.optimizer.savings import project
from trimloop.testing.provider_cache import PromptCache, chat_tokens

BASELINE_MODEL = "gpt-4.1-mini"
SENTENCES = [
    "Refunds for annual plans are prorated to the day the request reaches support.",
    "A duplicate charge is refunded in full once the bank reference is confirmed.",
    "Password resets never require the customer's current password.",
    "Outages are reported on the status page before any ticket is answered.",
    "Invoices can be reissued with a new billing address for the same period only.",
    "Enterprise customers are routed to their named account manager within one hour.",
    "Data export requests are fulfilled within seven days under the privacy policy.",
    "Bug reports need the app version, the device and the steps that reproduce it.",
]
TICKETS = ["I was charged twice for March", "the app crashes when I open settings", "how do I export my data",
           "please change the address on my invoice", "I forgot my password again", "is the service down?",
           "cancel my annual plan and refund the rest", "the sync button does nothing on Android"]


def policy(tokens: int) -> str:
    """A system prompt of about `tokens` tokens: the rules, then numbered clarifications."""
    from trimloop.core.catalog import count_tokens

    lines = ["You sort support tickets into billing, bug, account or other, and answer with the label only."]
    i = 0
    while count_tokens("\n".join(lines)) < tokens:
        lines.append(f"Rule {i + 1}: {SENTENCES[i % len(SENTENCES)]}")
        i += 1
    return "\n".join(lines)


def template(system: str) -> Template:
    return Template.chat(("system", system), ("user", "Ticket #{{n}}: {{ticket}}"))


@dataclass
class Call:
    at: float  # seconds since the start of the period
    inputs: dict[str, Any]
    output_tokens: int


def traffic(days: int, per_day: float, seed: int) -> list[Call]:
    """Poisson arrivals with a day/night cycle (3× busier at noon than at midnight)."""
    rng = random.Random(seed)
    calls, t, end = [], 0.0, days * 86400.0
    peak = per_day / 86400 * 1.5
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return calls
        if rng.random() <= (1 - 0.5 * math.cos(2 * math.pi * (t % 86400) / 86400)) / 1.5:
            ticket = f"{rng.choice(TICKETS)} (order {rng.randint(1000, 99999)})"
            calls.append(Call(t, {"n": str(rng.randint(1, 10**6)), "ticket": ticket}, rng.randint(1, 6)))


def list_prices(model: str) -> tuple[float, float, float]:
    """(input, cached input, output) USD per token, read straight from litellm's map (the provider's bill)."""
    info = import_litellm().get_model_info(model)
    return info["input_cost_per_token"], info["cache_read_input_token_cost"], info["output_cost_per_token"]


def bill(model: str, version: Template, calls: list[Call]) -> list[tuple[int, int, int, float]]:
    """(input, cached, output tokens, USD) per call as the provider bills them, in arrival order."""
    rule = cache_rule(model)
    assert rule is not None
    cache = PromptCache(rule, ttl_s=300)
    rate_in, rate_cached, rate_out = list_prices(model)
    out = []
    for call in calls:
        tokens, _ = chat_tokens(render(version, call.inputs))  # type: ignore[arg-type]
        cached, _ = cache.bill(model, tokens, call.at)
        billed = (len(tokens) - cached) * rate_in + cached * rate_cached + call.output_tokens * rate_out
        out.append((len(tokens), cached, call.output_tokens, billed))
    return out


def run(days: int, per_day: float, seed: int, fresh_traffic: bool = False) -> dict[str, Any]:
    settings = Settings()
    baseline = template(policy(2000))
    candidates = {
        "keeps_prefix": (BASELINE_MODEL, template(policy(1500))),
        "under_minimum": (BASELINE_MODEL, template(policy(800))),
        "other_model": ("gpt-4.1-nano", baseline),
    }
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    start = now - timedelta(days=days)
    logged_calls = traffic(days, per_day, seed)
    logs = bill(BASELINE_MODEL, baseline, logged_calls)
    traffic_sums = CacheTraffic()
    for tokens_in, cached, _, _ in logs:
        traffic_sums = traffic_sums.add(tokens_in, cached, None)
    base_model = resolve_model(settings, BASELINE_MODEL)
    cache = CacheModel.learn(traffic_sums, baseline=base_model, template=baseline)
    holdout = random.Random(seed + 1).sample(range(len(logged_calls)), 100)
    fresh = traffic(days, per_day, seed + 1000) if fresh_traffic else logged_calls
    replayed_base = sum(c for *_, c in (bill(BASELINE_MODEL, baseline, fresh) if fresh_traffic else logs))
    result: dict[str, Any] = {}
    for name, (model_id, version) in candidates.items():
        cand_model = resolve_model(settings, model_id)
        tokens = []
        for index in holdout:
            call = logged_calls[index]
            cand_in = len(chat_tokens(render(version, call.inputs))[0])  # type: ignore[arg-type]
            tokens.append(((logs[index][0], call.output_tokens), (cand_in, call.output_tokens)))
        priced = price_pairs(tokens, cache=cache, baseline=(base_model, baseline), candidate=(cand_model, version))
        assert priced is not None
        projection = project(
            call_times=[start + timedelta(seconds=c.at) for c in logged_calls], logged_costs=[c for *_, c in logs],
            baseline_latencies=[], paired_costs=priced.pairs, candidate_latencies=[], optimization_spend=0.0,
            now=now, window_days=days, naive_costs=priced.naive, n_boot=200,
            cached_share_before=priced.cached_share_before, cached_share_after=priced.cached_share_after,
            cache_note=priced.note)
        replayed_cand = sum(c for *_, c in bill(model_id, version, fresh))
        replayed = (replayed_base - replayed_cand) / days * DAYS_PER_MONTH
        assert projection.naive_monthly is not None
        result[name] = {
            "model": model_id,
            "projected_monthly": round(projection.monthly, 4),
            "replayed_monthly": round(replayed, 4),
            "error": round(projection.monthly / replayed - 1, 4),
            "naive_monthly": round(projection.naive_monthly, 4),
            "naive_error": round(projection.naive_monthly / replayed - 1, 4),
            "cached_share_before": round(priced.cached_share_before, 3),
            "cached_share_after": round(priced.cached_share_after, 3),
            "note": priced.note,
        }
    base_cpc = sum(c for *_, c in logs) / len(logs)
    return {"baseline": {"model": BASELINE_MODEL, "prompt_tokens": round(sum(t for t, *_ in logs) / len(logs)),
                         "calls_per_day": round(len(logged_calls) / days, 1), "hit_rate": round(cache.hit_rate, 3),
                         "cost_per_call": round(base_cpc, 8),
                         "monthly": round(base_cpc * len(logged_calls) / days * DAYS_PER_MONTH, 4)},
            "candidates": result}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--calls-per-day", type=float, default=400.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="replay on new traffic (another seed)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    out = run(args.days, args.calls_per_day, args.seed, args.fresh)
    out["params"] = {"days": args.days, "calls_per_day": args.calls_per_day, "seed": args.seed, "fresh": args.fresh}
    out["elapsed_s"] = round(time.perf_counter() - started, 1)
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
