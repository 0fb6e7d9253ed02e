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

from dataclasses import dataclass

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


@dataclass(frozen=True)
class CacheModel:
    """How often a cacheable prefix is read from (`hit_rate`) and written to (`write_rate`) the cache
    per call, learnt on the baseline and carried over to candidates."""

    hit_rate: float = 0.0
    write_rate: float = 0.0
    baseline_provider: str | None = None
    observed: bool = False

    @classmethod
    def learn(cls, traffic: CacheTraffic, *, baseline: ResolvedModel, template: Template) -> "CacheModel":
        rule = cache_rule(baseline.id)
        if traffic.calls == 0:
            return cls(baseline_provider=rule.provider if rule else None)
        cacheable = rule.cacheable(static_prefix_tokens(template)) if rule else 0
        mean_cached = traffic.cached_tokens / traffic.calls
        mean_written = traffic.cache_write_tokens / traffic.calls
        # more cached than the static prefix allows (repeated inputs): measure against what was cached
        cacheable = max(cacheable, mean_cached + mean_written)
        if cacheable <= 0:
            return cls(baseline_provider=rule.provider if rule else None, observed=True)
        return cls(hit_rate=min(1.0, mean_cached / cacheable), write_rate=min(1.0, mean_written / cacheable),
                   baseline_provider=rule.provider if rule else None, observed=True)

    def carries_to(self, rule: CacheRule | None) -> bool:
        """Whether the baseline's rates apply on this provider: it caches by itself, or it is the
        baseline's own provider (whose breakpoints the team already sets)."""
        return rule is not None and (rule.automatic or rule.provider == self.baseline_provider)

    def usage(self, model_id: str, template: Template, *, input_tokens: float, output_tokens: float,
              reasoning_tokens: float = 0.0) -> TokenUsage:
        """The token classes a call of this version is expected to be billed for, on average."""
        rule = cache_rule(model_id)
        cacheable = min(rule.cacheable(static_prefix_tokens(template)), input_tokens) if rule else 0
        if not self.carries_to(rule):
            cacheable = 0
        cached = round(self.hit_rate * cacheable)
        written = min(round(self.write_rate * cacheable), round(input_tokens) - cached)
        return TokenUsage(round(input_tokens), round(output_tokens), cached, max(0, written), round(reasoning_tokens))

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

    @property
    def saving(self) -> float:
        return _saving(self.pairs)

    @property
    def naive_saving(self) -> float:
        return _saving(self.naive)


def _saving(pairs: list[tuple[float, float]]) -> float:
    base = sum(b for b, _ in pairs)
    return 1 - sum(c for _, c in pairs) / base if base > 0 else 0.0


def price_pairs(tokens: list[tuple[tuple[float, float], tuple[float, float]]], *, cache: CacheModel,
                baseline: tuple[ResolvedModel, Template], candidate: tuple[ResolvedModel, Template]) -> PricedPairs | None:
    """Price the same items for baseline and candidate: `tokens` = per item ((input, output) of the
    baseline, (input, output) of the candidate). None when either model's price is unknown."""
    (base_model, base_template), (cand_model, cand_template) = baseline, candidate
    pairs, naive = [], []
    cached_in = [0.0, 0.0]
    total_in = [0.0, 0.0]
    for (b_in, b_out), (c_in, c_out) in tokens:
        b_usage = cache.usage(base_model.id, base_template, input_tokens=b_in, output_tokens=b_out)
        c_usage = cache.usage(cand_model.id, cand_template, input_tokens=c_in, output_tokens=c_out)
        b_cost, c_cost = base_model.cost(b_usage), cand_model.cost(c_usage)
        b_list = base_model.cost(TokenUsage(round(b_in), round(b_out)))
        c_list = cand_model.cost(TokenUsage(round(c_in), round(c_out)))
        if b_cost is None or c_cost is None or b_list is None or c_list is None:
            return None
        pairs.append((b_cost, c_cost))
        naive.append((b_list, c_list))
        cached_in[0] += b_usage.cached or 0
        cached_in[1] += c_usage.cached or 0
        total_in[0] += b_in
        total_in[1] += c_in
    before = cached_in[0] / total_in[0] if total_in[0] else 0.0
    after = cached_in[1] / total_in[1] if total_in[1] else 0.0
    result = PricedPairs(pairs, naive, before, after, None)
    note = why(cache, baseline=(base_model.id, base_template), candidate=(cand_model.id, cand_template),
               share_before=before, share_after=after, saving=result.saving, naive_saving=result.naive_saving)
    return PricedPairs(pairs, naive, before, after, note)
