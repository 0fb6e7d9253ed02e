"""What one call costs the way providers bill it: Σ token class × its price.

A `PriceSheet` holds a price per token class (input, cache read, cache write, output, reasoning),
batch prices, and long-context tiers (above N prompt tokens the whole call is billed at the tier's
prices, as Anthropic and Gemini do), each with where it came from. `cost(usage)` is the one cost
function: the gateway, the projection and sync's price check all call it. An unknown price makes
the cost unknown (None), never 0.

Fallbacks, each named in the price's source: no cache-read or cache-write price → the input price
(what a provider without a cache discount bills); no reasoning price → the output price (reasoning
is billed as output); no batch price → 50 % of the list price (OpenAI's, Anthropic's and Gemini's
batch discount).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trimloop.core.usage import TokenUsage

BATCH_DISCOUNT = 0.5


@dataclass(frozen=True)
class Rate:
    """USD per token for one class (None: unknown) and where that number came from."""

    per_token: float | None
    source: str

    def per_mtok(self) -> str:
        return "unknown" if self.per_token is None else f"{self.per_token * 1e6:.6g}"


UNKNOWN = Rate(None, "unknown")


@dataclass(frozen=True)
class Tier:
    """Prices for calls whose prompt has more than `above` tokens (the whole call, not the excess)."""

    above: int
    input: float
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    source: str = ""


@dataclass(frozen=True)
class PriceSheet:
    input: Rate = UNKNOWN
    output: Rate = UNKNOWN
    cache_read: Rate = UNKNOWN
    cache_write: Rate = UNKNOWN
    reasoning: Rate = UNKNOWN
    batch_input: Rate = UNKNOWN
    batch_output: Rate = UNKNOWN
    tiers: tuple[Tier, ...] = field(default=())

    @property
    def known(self) -> bool:
        return self.input.per_token is not None and self.output.per_token is not None

    def rates(self) -> dict[str, Rate]:
        """Every class's rate by name, for listings and evidence."""
        return {"input": self.input, "cache_read": self.cache_read, "cache_write": self.cache_write,
                "output": self.output, "reasoning": self.reasoning, "batch_input": self.batch_input,
                "batch_output": self.batch_output}

    def sources(self) -> dict[str, str]:
        out = {name: rate.source for name, rate in self.rates().items()}
        for tier in self.tiers:
            out[f"above_{tier.above}_tokens"] = tier.source
        return out

    def cost(self, usage: TokenUsage) -> float | None:
        """USD for one call with these token classes; None when a price it needs is unknown."""
        inp, out = usage.input or 0, usage.output or 0
        rate_in, rate_out = self.input.per_token, self.output.per_token
        if rate_in is None or rate_out is None:
            return None
        cached = min(usage.cached or 0, inp)
        write = min(usage.cache_write or 0, inp - cached)
        reasoning = min(usage.reasoning or 0, out)
        rate_read = _or(self.cache_read.per_token, rate_in)
        rate_write = _or(self.cache_write.per_token, rate_in)
        rate_reason = _or(self.reasoning.per_token, rate_out)
        tier = self.tier_for(inp)
        if tier is not None:
            scale_out = (tier.output / rate_out) if tier.output is not None and rate_out else 1.0
            rate_read = _or(tier.cache_read, rate_read * tier.input / rate_in if rate_in else tier.input)
            rate_write = _or(tier.cache_write, rate_write * tier.input / rate_in if rate_in else tier.input)
            rate_in = tier.input
            rate_out = _or(tier.output, rate_out)
            rate_reason *= scale_out
        if usage.batch:
            in_scale = _ratio(self.batch_input.per_token, self.input.per_token)
            out_scale = _ratio(self.batch_output.per_token, self.output.per_token)
            rate_in, rate_read, rate_write = rate_in * in_scale, rate_read * in_scale, rate_write * in_scale
            rate_out, rate_reason = rate_out * out_scale, rate_reason * out_scale
        plain = inp - cached - write
        return (plain * rate_in + cached * rate_read + write * rate_write
                + (out - reasoning) * rate_out + reasoning * rate_reason)

    def tier_for(self, prompt_tokens: int) -> Tier | None:
        above = [t for t in self.tiers if prompt_tokens > t.above]
        return max(above, key=lambda t: t.above) if above else None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _ratio(batch: float | None, list_price: float | None) -> float:
    """A batch price as a share of the list price (applied to every class, tiers included)."""
    if batch is None or not list_price:
        return BATCH_DISCOUNT
    return batch / list_price


def simple_sheet(input_per_token: float | None, output_per_token: float | None, source: str) -> PriceSheet:
    """Only input and output prices known (settings, notional local prices); the rest by the fallbacks."""
    return with_fallbacks(PriceSheet(input=Rate(input_per_token, source), output=Rate(output_per_token, source)))


def with_fallbacks(sheet: PriceSheet) -> PriceSheet:
    """Fill the classes without a price of their own from input/output, naming the fallback."""
    from dataclasses import replace

    changes: dict[str, Rate] = {}
    inp, out = sheet.input.per_token, sheet.output.per_token
    if sheet.cache_read.per_token is None and inp is not None:
        changes["cache_read"] = Rate(inp, "= input price (no cache-read price known)")
    if sheet.cache_write.per_token is None and inp is not None:
        changes["cache_write"] = Rate(inp, "= input price (no cache-write price known)")
    if sheet.reasoning.per_token is None and out is not None:
        changes["reasoning"] = Rate(out, "= output price (reasoning is billed as output)")
    if sheet.batch_input.per_token is None and inp is not None:
        changes["batch_input"] = Rate(inp * BATCH_DISCOUNT, "50 % of the input price (batch discount)")
    if sheet.batch_output.per_token is None and out is not None:
        changes["batch_output"] = Rate(out * BATCH_DISCOUNT, "50 % of the output price (batch discount)")
    return replace(sheet, **changes) if changes else sheet


MAP_SOURCE = "litellm price map"
_TIER_KEY = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")


def sheet_from_map(info: Mapping[str, Any]) -> PriceSheet | None:
    """A price sheet from one entry of litellm's price map (`litellm.get_model_info`), or None."""
    inp, out = _num(info.get("input_cost_per_token")), _num(info.get("output_cost_per_token"))
    if inp is None and out is None:
        return None
    inp, out = inp or 0.0, out or 0.0

    def rate(key: str) -> Rate:
        value = _num(info.get(key))
        return Rate(value, f"{MAP_SOURCE} ({key})") if value is not None else UNKNOWN

    tiers = []
    for key in info:
        match = _TIER_KEY.match(str(key))
        if match is None or _num(info[key]) is None:
            continue
        k = match.group(1)
        tiers.append(Tier(
            above=int(k) * 1000, input=float(info[key]),
            output=_num(info.get(f"output_cost_per_token_above_{k}k_tokens")),
            cache_read=_num(info.get(f"cache_read_input_token_cost_above_{k}k_tokens")),
            cache_write=_num(info.get(f"cache_creation_input_token_cost_above_{k}k_tokens")),
            source=f"{MAP_SOURCE} (*_above_{k}k_tokens)"))
    sheet = PriceSheet(
        input=Rate(inp, f"{MAP_SOURCE} (input_cost_per_token)"),
        output=Rate(out, f"{MAP_SOURCE} (output_cost_per_token)"),
        cache_read=rate("cache_read_input_token_cost"), cache_write=rate("cache_creation_input_token_cost"),
        reasoning=rate("output_cost_per_reasoning_token"), batch_input=rate("input_cost_per_token_batches"),
        batch_output=rate("output_cost_per_token_batches"), tiers=tuple(sorted(tiers, key=lambda t: t.above)))
    return with_fallbacks(sheet)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value >= 0 else None


# --- prompt caching rules ---------------------------------------------------------------------

@dataclass(frozen=True)
class CacheRule:
    """How a provider caches prompt prefixes: the fewest tokens it caches, the step it caches in
    beyond that, and whether it does so by itself (OpenAI, Gemini) or only at the caller's explicit
    breakpoints (Anthropic's `cache_control`)."""

    provider: str
    minimum: int
    step: int
    automatic: bool

    def cacheable(self, prefix_tokens: float) -> int:
        """The tokens of a static prefix this provider can serve from its cache (0 under the minimum)."""
        if prefix_tokens < self.minimum:
            return 0
        return self.minimum + int((prefix_tokens - self.minimum) // self.step) * self.step

    def describe(self) -> str:
        how = "automatic" if self.automatic else "explicit breakpoints"
        step = f", in {self.step}-token steps" if self.step > 1 else ""
        return f"{self.provider}: prefixes of ≥ {self.minimum:,} tokens{step} ({how})"


# Anthropic's per-model minimum cacheable length (docs.anthropic.com prompt caching; checked 2026):
# Opus 4.5/4.6 and Haiku 4.5: 4,096; Sonnet 4.6 and Haiku 3/3.5: 2,048; other Sonnet/Opus: 1,024.
_ANTHROPIC_MINIMUM = (("opus-4-5", 4096), ("opus-4.5", 4096), ("opus-4-6", 4096), ("opus-4.6", 4096),
                      ("haiku-4-5", 4096), ("haiku-4.5", 4096), ("sonnet-4-6", 2048), ("sonnet-4.6", 2048),
                      ("haiku", 2048))


def cache_rule(model_id: str) -> CacheRule | None:
    """The caching rule of the provider serving `model_id`, or None when it caches nothing we know of."""
    name = model_id.lower()
    provider = name.split("/", 1)[0] if "/" in name else ""
    if "claude" in name:
        minimum = next((m for key, m in _ANTHROPIC_MINIMUM if key in name), 1024)
        return CacheRule("anthropic", minimum, 1, automatic=False)
    if provider in ("openai", "azure") or name.startswith(("gpt-", "o1", "o3", "o4", "chatgpt-")):
        return CacheRule("openai", 1024, 128, automatic=True)
    if "gemini" in name:
        return CacheRule("gemini", 2048 if "pro" in name else 1024, 1, automatic=True)
    if provider == "deepseek" or name.startswith("deepseek"):
        return CacheRule("deepseek", 64, 64, automatic=True)
    return None
