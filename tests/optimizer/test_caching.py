"""Cache-aware projection: the baseline's observed prompt-cache hit rate carried over to a candidate's
static prefix by its provider's rule (minimum, step, automatic or explicit)."""

from __future__ import annotations

import pytest

from trimloop.core.catalog import count_message_tokens, count_tokens, resolve_model
from trimloop.core.settings import Settings
from trimloop.core.templates import Template
from trimloop.optimizer.caching import CacheModel, CacheTraffic, price_pairs, static_prefix_tokens

SETTINGS = Settings()
POLICY = " ".join(["Refunds are issued within thirty days of purchase."] * 180)  # ~1,800 tokens


def chat(system: str) -> Template:
    return Template.chat(("system", system), ("user", "Ticket: {{ticket}}"))


def test_static_prefix_is_the_text_before_the_first_variable() -> None:
    template = chat("Sort tickets.")
    prefix = static_prefix_tokens(template)
    assert prefix == (3 + count_tokens("Sort tickets.") + 1) + 3 + count_tokens("Ticket: ")
    assert prefix < count_message_tokens([{"role": "system", "content": "Sort tickets."},
                                          {"role": "user", "content": "Ticket: my invoice is wrong"}])
    assert static_prefix_tokens(Template.plain("no variables at all")) == count_tokens("no variables at all")


def learned(hit_rate: float, model: str = "gpt-4.1-mini") -> tuple[CacheModel, Template]:
    template = chat(POLICY)
    cacheable = 1024 + (static_prefix_tokens(template) - 1024) // 128 * 128
    calls = 100
    traffic = CacheTraffic(calls=calls, input_tokens=calls * (static_prefix_tokens(template) + 20),
                           cached_tokens=round(calls * hit_rate * cacheable))
    return CacheModel.learn(traffic, baseline=resolve_model(SETTINGS, model), template=template), template


def test_hit_rate_is_learnt_from_the_baseline_and_carried_to_a_prefix_that_still_qualifies() -> None:
    cache, template = learned(0.7)
    assert cache.hit_rate == pytest.approx(0.7, abs=0.01) and cache.observed
    shorter = chat(POLICY[: len(POLICY) * 2 // 3])  # ~1,200 tokens: still over 1,024
    usage = cache.usage("gpt-4.1-mini", shorter, input_tokens=static_prefix_tokens(shorter) + 20, output_tokens=5)
    prefix = static_prefix_tokens(shorter)
    assert usage.cached == round(0.7 * (1024 + (prefix - 1024) // 128 * 128))


def test_a_prefix_under_the_minimum_loses_the_cache_and_the_evidence_says_so() -> None:
    cache, template = learned(0.9)
    short = chat(POLICY[: len(POLICY) // 3])  # ~600 tokens: under OpenAI's 1,024
    base_in, cand_in = static_prefix_tokens(template) + 20, static_prefix_tokens(short) + 20
    model = resolve_model(SETTINGS, "gpt-4.1-mini")
    priced = price_pairs([((base_in, 5), (cand_in, 5))] * 3, cache=cache, baseline=(model, template),
                         candidate=(model, short))
    assert priced is not None and priced.cached_share_after == 0 and priced.cached_share_before > 0.8
    assert priced.saving < priced.naive_saving
    assert priced.note is not None and "falls under the 1,024-token cache minimum of openai" in priced.note
    assert f"saves {priced.saving * 100:.0f} %, not {priced.naive_saving * 100:.0f} %" in priced.note


def test_explicit_breakpoints_do_not_carry_to_another_provider() -> None:
    cache, template = learned(0.8)
    usage = cache.usage("claude-haiku-4-5", template, input_tokens=2000, output_tokens=5)
    assert usage.cached == 0  # Anthropic caches only at cache_control breakpoints the team has not set
    same_family = cache.usage("gpt-4.1-nano", template, input_tokens=2000, output_tokens=5)
    assert same_family.cached and same_family.cached > 0  # OpenAI caches by itself


def test_no_token_classes_in_the_logs_means_no_cache_projected() -> None:
    cache = CacheModel.learn(CacheTraffic(), baseline=resolve_model(SETTINGS, "gpt-4.1-mini"), template=chat(POLICY))
    assert not cache.observed and cache.usage("gpt-4.1-mini", chat(POLICY), input_tokens=2000, output_tokens=1).cached == 0


def test_unknown_price_gives_no_projection() -> None:
    cache, template = learned(0.5)
    mystery = resolve_model(Settings(models={"acme/mystery": {"api_base": "http://127.0.0.1:9/v1"}}), "acme/mystery")
    model = resolve_model(SETTINGS, "gpt-4.1-mini")
    assert price_pairs([((100, 1), (90, 1))], cache=cache, baseline=(model, template),
                       candidate=(mystery, template)) is None


def test_a_teams_own_anthropic_breakpoints_seen_in_the_logs_carry_to_candidates_without_params() -> None:
    template = chat(POLICY)
    sonnet = resolve_model(SETTINGS, "claude-sonnet-4-5")
    prefix = static_prefix_tokens(template)
    traffic = CacheTraffic(calls=10, input_tokens=10 * (prefix + 20), cached_tokens=8 * prefix, cache_write_tokens=2 * prefix)
    cache = CacheModel.learn(traffic, baseline=sonnet, template=template, params={})
    usage = cache.usage("claude-sonnet-4-5", template, input_tokens=prefix + 20, output_tokens=5, params={})
    assert usage.cached == round(0.8 * prefix) and usage.cache_write == round(0.2 * prefix)
    none_seen = CacheModel.learn(CacheTraffic(calls=10, input_tokens=10 * (prefix + 20)), baseline=sonnet,
                                 template=template, params={})
    assert none_seen.usage("claude-sonnet-4-5", template, input_tokens=prefix + 20, output_tokens=5,
                           params={}).cached == 0
