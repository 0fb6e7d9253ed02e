"""Cache-aware cost per call: what a version's calls cost once the provider's prompt cache is counted.

A provider caches the static prefix of a prompt — the rendered text before the first variable —
by its own rule (`core.pricing.CacheRule`: OpenAI from 1,024 tokens in 128-token steps, by itself;
Anthropic from a per-model minimum, at explicit breakpoints). The baseline's logs say how often that
prefix was served from the cache (`hit_rate` = cached tokens per call ÷ the prefix's cacheable
tokens) and how often it was written. A candidate keeps that traffic, so the same rates carry over
to its own cacheable prefix — none when it falls under its provider's minimum, and none on a
provider that caches only at breakpoints the team has not been seen to set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trimloop.core.catalog import ResolvedModel, count_tokens
from trimloop.core.pricing import CacheRule, cache_rule
from trimloop.core.templates import PLACEHOLDER, Template
from trimloop.core.usage import TokenUsage


def static_prefix_tokens(template: Template) -> int:
    """Tokens of the rendered prompt before its first variable, by OpenAI's chat accounting (3 tokens
    before each message's content, 1 after) so they compare with the prompt's input tokens."""
    if template.kind == "text":
        text = template.text or ""
        match = PLACEHOLDER.search(text)
        return count_tokens(text[:match.start()] if match else text)
    total = 0
    for message in template.messages or []:
        match = PLACEHOLDER.search(message.content)
        if match is None:
            total += 3 + count_tokens(message.content) + 1
            continue
        return total + 3 + count_tokens(message.content[:match.start()])
    return total


@dataclass(frozen=True)
class CacheTraffic:
    """The baseline's logged cache behaviour: sums over the calls whose logs report token classes."""

    calls: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0

    def add(self, input_tokens: int | None, cached: int | None, written: int | None) -> "CacheTraffic":
        if input_tokens is None or (cached is None and written is None):
            return self
        return CacheTraffic(self.calls + 1, self.input_tokens + input_tokens, self.cached_tokens + (cached or 0),
                            self.cache_write_tokens + (written or 0))

    @property
    def cached_share(self) -> float | None:
        return self.cached_tokens / self.input_tokens if self.input_tokens else None


CACHE_TTL_S = 300.0  # how long a provider keeps an unused prefix: 5 minutes (OpenAI's and Anthropic's default)
BREAKPOINTS = "cache_control_injection_points"  # the version param that sets Anthropic breakpoints (litellm)


def has_breakpoints(params: dict[str, Any] | None) -> bool:
    """The version sets explicit cache breakpoints (litellm's `cache_control_injection_points`)."""
    return bool((params or {}).get(BREAKPOINTS))


def breakpoint_prefix_tokens(template: Template, params: dict[str, Any] | None) -> int:
    """Tokens up to the end of the last message an explicit breakpoint marks (by index or role),
    by the same chat accounting as `static_prefix_tokens`; what an explicit-breakpoint provider caches."""
    messages = template.messages or []
    marked = -1
    for point in (params or {}).get(BREAKPOINTS) or []:
        if not isinstance(point, dict) or point.get("location") != "message":
            continue
        if isinstance(point.get("index"), int):
            marked = max(marked, point["index"] % len(messages) if messages else -1)
        elif point.get("role"):
            marked = max([marked] + [i for i, m in enumerate(messages) if m.role == point["role"]])
    return sum(3 + count_tokens(m.content) + 1 for m in messages[:marked + 1])


def arrival_hit_rate(call_times: Sequence[datetime], ttl_s: float = CACHE_TTL_S) -> float | None:
    """The share of calls that arrive within `ttl_s` of the call before them: how often one static
    prefix would be read from the cache (the rest write it again); None without two calls."""
    if len(call_times) < 2:
        return None
    times = sorted(call_times)
    close = sum(1 for a, b in zip(times, times[1:]) if (b - a).total_seconds() <= ttl_s)
    return close / len(times)


@dataclass(frozen=True)
class CacheModel:
    """How often a cacheable prefix is read from (`hit_rate`) and written to (`write_rate`) the cache
    per call, learnt on the baseline and carried over to candidates. `arrival_rate`: the share of
    calls within the cache's lifetime of the previous one, from the call times — what a static
    prefix would get where the baseline's own prefix could not be cached (a variable on its first
    line, no breakpoints set), so a layout that makes it cacheable is priced by the traffic."""

    hit_rate: float = 0.0
    write_rate: float = 0.0
    baseline_provider: str | None = None
    observed: bool = False
    arrival_rate: float | None = None
    learnt_prefix: bool = False  # the baseline's prefix was cacheable, so its rates were measured

    @classmethod
    def learn(cls, traffic: CacheTraffic, *, baseline: ResolvedModel, template: Template,
              call_times: Sequence[datetime] = (), params: dict[str, Any] | None = None) -> "CacheModel":
        rule = cache_rule(baseline.id)
        provider = rule.provider if rule else None
        arrival = arrival_hit_rate(call_times)
        if traffic.calls == 0:
            return cls(baseline_provider=provider)
        cacheable = rule.cacheable(static_prefix_tokens(template)) if rule else 0
        if rule is not None and not rule.automatic and not has_breakpoints(params) \
                and traffic.cached_tokens == 0 and traffic.cache_write_tokens == 0:
            cacheable = 0  # an explicit-breakpoint provider, and the baseline sets none: nothing was cacheable
        mean_cached = traffic.cached_tokens / traffic.calls
        mean_written = traffic.cache_write_tokens / traffic.calls
        # more cached than the static prefix allows (repeated inputs): measure against what was cached
        cacheable = max(cacheable, mean_cached + mean_written)
        if cacheable <= 0:
            return cls(baseline_provider=provider, observed=True, arrival_rate=arrival)
        return cls(hit_rate=min(1.0, mean_cached / cacheable), write_rate=min(1.0, mean_written / cacheable),
                   baseline_provider=provider, observed=True, arrival_rate=arrival, learnt_prefix=True)

    def carries_to(self, rule: CacheRule | None) -> bool:
        """Whether the baseline's rates apply on this provider: it caches by itself, or it is the
        baseline's own provider (whose breakpoints the team already sets)."""
        return rule is not None and (rule.automatic or rule.provider == self.baseline_provider)

    def rates(self, rule: CacheRule | None, *, breakpoints: bool | None = None) -> tuple[float, float]:
        """(read, write) rates per call of a cacheable prefix on `rule`'s provider. `breakpoints`:
        whether the version sets explicit breakpoints (None: not known, as before layouts existed)."""
        if rule is None or not self.observed:
            return 0.0, 0.0
        by_traffic = (self.arrival_rate, (1 - self.arrival_rate) if not rule.automatic else 0.0) \
            if self.arrival_rate is not None else (0.0, 0.0)
        if not rule.automatic:
            if rule.provider == self.baseline_provider and self.learnt_prefix:
                return self.hit_rate, self.write_rate  # the team's breakpoints, seen caching in the logs
            return by_traffic if breakpoints else (0.0, 0.0)  # a version that sets them: priced by the traffic
        return (self.hit_rate, self.write_rate) if self.learnt_prefix else by_traffic

    def usage(self, model_id: str, template: Template, *, input_tokens: float, output_tokens: float,
              reasoning_tokens: float = 0.0, params: dict[str, Any] | None = None) -> TokenUsage:
        """The token classes a call of this version is expected to be billed for, on average.
        With `params`, a version without explicit breakpoints gets no cache on a provider that needs them."""
        rule = cache_rule(model_id)
        prefix = static_prefix_tokens(template)
        if rule is not None and not rule.automatic and has_breakpoints(params):
            prefix = min(prefix, breakpoint_prefix_tokens(template, params))
        cacheable = min(rule.cacheable(prefix), input_tokens) if rule else 0
        hit, write = self.rates(rule, breakpoints=None if params is None else has_breakpoints(params))
        cached = round(hit * cacheable)
        written = min(round(write * cacheable), round(input_tokens) - cached)
        return TokenUsage(round(input_tokens), round(output_tokens), cached, max(0, written),
                          min(round(reasoning_tokens), round(output_tokens)))

    def cached_share(self, model_id: str, template: Template, input_tokens: float) -> float:
        usage = self.usage(model_id, template, input_tokens=input_tokens, output_tokens=0)
        return (usage.cached or 0) / input_tokens if input_tokens else 0.0


def why(model: CacheModel, *, baseline: tuple[str, Template], candidate: tuple[str, Template],
        share_before: float, share_after: float, saving: float, naive_saving: float) -> str | None:
    """One sentence on what caching does to the saving, when it changes it."""
    if not model.observed or (share_before == 0 and share_after == 0):
        return None
    rule = cache_rule(candidate[0])
    prefix = static_prefix_tokens(candidate[1])
    pct = f"saves {saving * 100:.0f} %, not {naive_saving * 100:.0f} %"
    if rule is not None and share_before > 0 and share_after == 0 and prefix < rule.minimum:
        return (f"the candidate's static prefix ({prefix:,} tokens) falls under the {rule.minimum:,}-token cache "
                f"minimum of {rule.provider}: {pct}")
    if share_before > 0 and share_after == 0:
        return f"the candidate loses the prompt cache ({candidate[0]} does not cache this prefix): {pct}"
    shares = f"cached share of the prompt {share_before * 100:.0f} % before, {share_after * 100:.0f} % after"
    if round(saving * 100) == round(naive_saving * 100):
        return f"{shares}: the cache leaves the saving at {saving * 100:.0f} %"
    return f"{shares}: {pct}"


@dataclass(frozen=True)
class PricedPairs:
    """Baseline and candidate cost per item, cache-aware (`pairs`) and at list price (`naive`)."""

    pairs: list[tuple[float, float]]
    naive: list[tuple[float, float]]
    cached_share_before: float
    cached_share_after: float
    note: str | None
    output: list[tuple[float, float]] = field(default_factory=list)  # the output tokens' part of `naive`

    @property
    def saving(self) -> float:
        return _saving(self.pairs)

    def saving_share(self) -> dict[str, float] | None:
        """The share of the saving from each token class: `output` (output and reasoning tokens at
        list price), `input` (prompt tokens at list price) and `cached` (what the prompt cache adds
        or takes away: the cache-aware saving minus the list-price one). They sum to 1; a class can
        be negative (a layout change pays a little more input to cache much more). None: no saving."""
        total = sum(b - c for b, c in self.pairs)
        if total <= 0:
            return None
        naive = sum(b - c for b, c in self.naive)
        output = sum(b - c for b, c in self.output)
        return {"input": round((naive - output) / total, 4), "output": round(output / total, 4),
                "cached": round((total - naive) / total, 4)}

    @property
    def naive_saving(self) -> float:
        return _saving(self.naive)


def _saving(pairs: list[tuple[float, float]]) -> float:
    base = sum(b for b, _ in pairs)
    return 1 - sum(c for _, c in pairs) / base if base > 0 else 0.0


def price_pairs(tokens: Sequence[tuple[tuple[float, ...], tuple[float, ...]]], *, cache: CacheModel,
                baseline: tuple[ResolvedModel, Template], candidate: tuple[ResolvedModel, Template],
                params: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)) -> PricedPairs | None:
    """Price the same items for baseline and candidate: `tokens` = per item ((input, output[,
    reasoning]) of the baseline, the same of the candidate); reasoning is part of output and billed
    at its own price. `params`: each version's params (whether it sets cache breakpoints). None
    when either model's price is unknown."""
    (base_model, base_template), (cand_model, cand_template) = baseline, candidate
    pairs, naive, output = [], [], []
    cached_in = [0.0, 0.0]
    total_in = [0.0, 0.0]
    for base_tokens, cand_tokens in tokens:
        (b_in, b_out, b_reason), (c_in, c_out, c_reason) = _three(base_tokens), _three(cand_tokens)
        b_usage = cache.usage(base_model.id, base_template, input_tokens=b_in, output_tokens=b_out,
                              reasoning_tokens=b_reason, params=params[0])
        c_usage = cache.usage(cand_model.id, cand_template, input_tokens=c_in, output_tokens=c_out,
                              reasoning_tokens=c_reason, params=params[1])
        b_cost, c_cost = base_model.cost(b_usage), cand_model.cost(c_usage)
        b_list = base_model.cost(TokenUsage(round(b_in), round(b_out), reasoning=b_usage.reasoning))
        c_list = cand_model.cost(TokenUsage(round(c_in), round(c_out), reasoning=c_usage.reasoning))
        if b_cost is None or c_cost is None or b_list is None or c_list is None:
            return None
        pairs.append((b_cost, c_cost))
        naive.append((b_list, c_list))
        output.append((b_list - (base_model.cost(TokenUsage(round(b_in), 0)) or 0.0),
                       c_list - (cand_model.cost(TokenUsage(round(c_in), 0)) or 0.0)))
        cached_in[0] += b_usage.cached or 0
        cached_in[1] += c_usage.cached or 0
        total_in[0] += b_in
        total_in[1] += c_in
    before = cached_in[0] / total_in[0] if total_in[0] else 0.0
    after = cached_in[1] / total_in[1] if total_in[1] else 0.0
    result = PricedPairs(pairs, naive, before, after, None)
    note = why(cache, baseline=(base_model.id, base_template), candidate=(cand_model.id, cand_template),
               share_before=before, share_after=after, saving=result.saving, naive_saving=result.naive_saving)
    return PricedPairs(pairs, naive, before, after, note, output)


def _three(tokens: tuple[float, ...]) -> tuple[float, float, float]:
    """(input, output, reasoning) from a pair or a triple."""
    return (tokens[0], tokens[1], tokens[2] if len(tokens) > 2 else 0.0)
