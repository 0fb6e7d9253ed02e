"""A call costs what the provider bills: Σ token class × its price.

The fake OpenAI-compatible server caches prompt prefixes by the provider's rule and reports usage in
the provider's shape; each test writes the provider's published formula with its list prices (USD
per 1M tokens, litellm's map) and checks the gateway's cost against it."""

import pytest

from trimloop.core.catalog import count_message_tokens, count_tokens, resolve_model
from trimloop.core.gateway import Gateway
from trimloop.core.settings import GatewaySettings, ModelConfig, Settings
from trimloop.core.usage import TokenUsage
from trimloop.testing.fake_openai import running

M = 1e-6  # $ per 1M tokens → $ per token
# gpt-4.1-mini: input 0.40, cached input 0.10, output 1.60 (batch 0.20 / 0.80)
# claude-sonnet-4-5: input 3.00, cache write 3.75, cache read 0.30, output 15.00 (batch: half)
# o3: input 2.00, cached 0.50, output 8.00 (reasoning billed as output)
# gemini-2.5-pro: input 1.25, output 10.00; above 200k prompt tokens 2.50 / 15.00 for the whole call


@pytest.fixture(scope="module")
def openai_cache():
    with running("--prompt-cache", "openai") as url:
        yield url


@pytest.fixture(scope="module")
def anthropic_cache():
    with running("--prompt-cache", "anthropic") as url:
        yield url


@pytest.fixture(scope="module")
def reasoning():
    with running("--reasoning-tokens", "40") as url:
        yield url


def settings(**models):
    return Settings(gateway=GatewaySettings(max_retries=0, timeout_s=10), models=models)


def padded(target: int, user: str) -> list[dict[str, str]]:
    """A chat whose prompt is exactly `target` tokens, by OpenAI's chat accounting."""
    words = ["policy"] * (target - 20)
    while True:
        messages = [{"role": "system", "content": " ".join(words)}, {"role": "user", "content": user}]
        n = count_message_tokens(messages)
        if n == target:
            return messages
        words = words[:target - n] if n > target else words + ["policy"] * (target - n)


async def call(gw, model, messages, max_tokens=4):
    return await gw.call(model, messages=messages, params={"max_tokens": max_tokens})


async def test_no_cache_is_input_plus_output_at_list_price(openai_cache):
    async with Gateway(settings(**{"gpt-4.1-mini": ModelConfig(api_base=f"{openai_cache}/v1")})) as gw:
        result = await call(gw, "gpt-4.1-mini", [{"role": "user", "content": "short prompt, nothing to cache"}])
    assert result.cached_tokens == 0
    assert result.cost == pytest.approx(result.input_tokens * 0.40 * M + 4 * 1.60 * M)


async def test_partial_and_full_cache_hits_bill_cached_tokens_at_the_cache_price(openai_cache):
    shared = padded(1152, "ticket one")  # 1,152 = 1,024 + 128: the whole prompt is cacheable
    other = [shared[0], {"role": "user", "content": "a different ticket, same long policy"}]
    async with Gateway(settings(**{"gpt-4.1-mini": ModelConfig(api_base=f"{openai_cache}/v1")})) as gw:
        cold = await call(gw, "gpt-4.1-mini", shared)
        full = await gw.call("gpt-4.1-mini", messages=shared, params={"max_tokens": 4, "temperature": 0.5})
        partial = await call(gw, "gpt-4.1-mini", other)
    assert cold.cached_tokens == 0 and cold.input_tokens == 1152
    assert full.cached_tokens == 1152  # a full hit: every prompt token read from the cache
    assert full.cost == pytest.approx(1152 * 0.10 * M + 4 * 1.60 * M)
    # the shared system prefix is 1,147 tokens: OpenAI caches 1,024 of them (the next step is 1,152)
    assert partial.cached_tokens == 1024 and partial.input_tokens > 1024
    assert partial.cost == pytest.approx((partial.input_tokens - 1024) * 0.40 * M + 1024 * 0.10 * M + 4 * 1.60 * M)


async def test_litellm_route_reads_cached_tokens_from_its_usage(openai_cache):
    config = ModelConfig(api_base=f"{openai_cache}/v1", via_litellm=True)
    messages = padded(1280, "through litellm")
    async with Gateway(settings(**{"openai/gpt-4.1-mini": config})) as gw:
        await call(gw, "openai/gpt-4.1-mini", messages)
        hit = await gw.call("openai/gpt-4.1-mini", messages=messages, params={"max_tokens": 4, "seed": 2})
    assert hit.cached_tokens == 1280
    assert hit.cost == pytest.approx(1280 * 0.10 * M + 4 * 1.60 * M)


async def test_anthropic_cache_write_then_read(anthropic_cache):
    messages = padded(1300, "first question")
    async with Gateway(settings(**{"claude-sonnet-4-5": ModelConfig(api_base=f"{anthropic_cache}/v1")})) as gw:
        write = await call(gw, "claude-sonnet-4-5", messages)
        read = await call(gw, "claude-sonnet-4-5", [messages[0], {"role": "user", "content": "second question"}])
    system = 3 + count_tokens(messages[0]["content"]) + 1  # the breakpoint: the end of the system message
    assert (write.cache_write_tokens, write.cached_tokens) == (system, 0)
    assert write.input_tokens == 1300  # Anthropic's input_tokens (uncached) + both cache buckets
    assert write.cost == pytest.approx((1300 - system) * 3.00 * M + system * 3.75 * M + 4 * 15.00 * M)
    assert (read.cached_tokens, read.cache_write_tokens) == (system, 0)
    assert read.cost == pytest.approx((read.input_tokens - system) * 3.00 * M + system * 0.30 * M + 4 * 15.00 * M)


async def test_anthropic_prompt_under_the_model_minimum_is_not_cached(anthropic_cache):
    messages = padded(1300, "haiku 4.5 caches from 4,096 tokens")
    async with Gateway(settings(**{"claude-haiku-4-5": ModelConfig(api_base=f"{anthropic_cache}/v1")})) as gw:
        first = await call(gw, "claude-haiku-4-5", messages)
        again = await gw.call("claude-haiku-4-5", messages=messages, params={"max_tokens": 4, "seed": 1})
    assert (first.cache_write_tokens, again.cached_tokens) == (0, 0)
    assert again.cost == pytest.approx(1300 * 1.00 * M + 4 * 5.00 * M)


async def test_reasoning_tokens_are_billed_as_output(reasoning):
    async with Gateway(settings(o3=ModelConfig(api_base=f"{reasoning}/v1"))) as gw:
        result = await call(gw, "o3", [{"role": "user", "content": "think first"}], max_tokens=10)
    assert result.reasoning_tokens == 40 and result.output_tokens == 50
    assert result.cost == pytest.approx(result.input_tokens * 2.00 * M + (10 + 40) * 8.00 * M)


def test_batch_calls_are_billed_at_the_batch_price():
    sonnet = resolve_model(Settings(), "claude-sonnet-4-5")
    assert sonnet.cost(TokenUsage(10_000, 500, batch=True)) == pytest.approx(10_000 * 1.50 * M + 500 * 7.50 * M)
    cached = TokenUsage(10_000, 500, cached=8_000, batch=True)
    assert sonnet.cost(cached) == pytest.approx(2_000 * 1.50 * M + 8_000 * 0.15 * M + 500 * 7.50 * M)
    mini = resolve_model(Settings(), "gpt-4.1-mini")
    assert mini.prices.batch_input.source == "litellm price map (input_cost_per_token_batches)"
    assert mini.cost(TokenUsage(1_000, 100, batch=True)) == pytest.approx(1_000 * 0.20 * M + 100 * 0.80 * M)


def test_long_context_tier_bills_the_whole_call_at_the_higher_price():
    pro = resolve_model(Settings(), "gemini/gemini-2.5-pro")
    assert pro.cost(TokenUsage(150_000, 1_000)) == pytest.approx(150_000 * 1.25 * M + 1_000 * 10.00 * M)
    assert pro.cost(TokenUsage(250_000, 1_000)) == pytest.approx(250_000 * 2.50 * M + 1_000 * 15.00 * M)
    assert pro.cost(TokenUsage(250_000, 1_000, cached=200_000)) == pytest.approx(
        50_000 * 2.50 * M + 200_000 * 0.25 * M + 1_000 * 15.00 * M)


async def test_custom_prices_per_class_override_the_map_and_name_their_source(openai_cache):
    config = ModelConfig(api_base=f"{openai_cache}/v1", cache_read_per_mtok=0.05, long_context_above_tokens=1200,
                         long_context_input_per_mtok=0.80, long_context_output_per_mtok=3.20)
    messages = padded(1280, "custom prices")
    async with Gateway(settings(**{"gpt-4.1-mini": config})) as gw:
        await call(gw, "gpt-4.1-mini", messages)
        hit = await gw.call("gpt-4.1-mini", messages=messages, params={"max_tokens": 4, "seed": 3})
        model = gw.model("gpt-4.1-mini")
    assert model.prices.cache_read.source == 'settings: models."gpt-4.1-mini".cache_read_per_mtok'
    assert model.prices.input.source == "litellm price map (input_cost_per_token)"
    # above 1,200 prompt tokens the configured tier applies; the cache price scales with it (0.05 × 0.80/0.40)
    assert hit.cost == pytest.approx(1280 * 0.10 * M + 4 * 3.20 * M)


async def test_unknown_price_is_unknown_not_zero(openai_cache):
    async with Gateway(settings(**{"acme/mystery": ModelConfig(api_base=f"{openai_cache}/v1")})) as gw:
        result = await call(gw, "acme/mystery", [{"role": "user", "content": "who prices me?"}])
        model = gw.model("acme/mystery")
    assert result.cost is None and result.spent == 0.0 and result.input_tokens > 0
    assert model.cost(TokenUsage(100, 10)) is None and model.prices.input.source == "unknown"


async def test_litellm_anthropic_route_bills_cache_write_then_read(anthropic_cache):
    """litellm's own Anthropic client against the fake Messages API: its usage (prompt_tokens with both
    cache buckets, cache_creation_input_tokens) reaches the cost the way Anthropic bills it."""
    config = ModelConfig(api_base=anthropic_cache, via_litellm=True)
    messages = padded(1400, "through litellm to anthropic")
    async with Gateway(settings(**{"anthropic/claude-sonnet-4-5": config})) as gw:
        write = await call(gw, "anthropic/claude-sonnet-4-5", messages)
        read = await call(gw, "anthropic/claude-sonnet-4-5", [messages[0], {"role": "user", "content": "again"}])
    system = 3 + count_tokens(messages[0]["content"]) + 1
    assert (write.input_tokens, write.cache_write_tokens) == (1400, system)
    assert write.cost == pytest.approx((1400 - system) * 3.00 * M + system * 3.75 * M + 4 * 15.00 * M)
    assert read.cached_tokens == system
    assert read.cost == pytest.approx((read.input_tokens - system) * 3.00 * M + system * 0.30 * M + 4 * 15.00 * M)
