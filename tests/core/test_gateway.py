"""The gateway against a fault-injecting OpenAI-compatible server on 127.0.0.1, and with a fake
provider in place of the wire."""

import asyncio
import math
import time

import httpx
import pytest

from trimloop.core.catalog import count_message_tokens, count_tokens
from trimloop.core.errors import ConfigError, GatewayError, ProviderUnavailable, SpendCapReached, UserError
from trimloop.core.gateway import Gateway
from trimloop.core.ledger import Ledger
from trimloop.core.providers import Fatal, Retryable
from trimloop.core.settings import GatewaySettings, ModelConfig, Settings
from trimloop.testing.fake_openai import running
from trimloop.testing.fake_provider import FakeProvider, fake_model

CHAT = [{"role": "user", "content": "Classify: I loved it"}]


@pytest.fixture(scope="module")
def fake_server():
    with running("--count-tokens", "--timeout-s", "3") as url:
        yield url


@pytest.fixture
def server(fake_server):
    deadline = time.monotonic() + 10
    while stats(fake_server)["inflight"] and time.monotonic() < deadline:
        time.sleep(0.1)  # requests abandoned by a timeout test are still sleeping server-side
    httpx.post(f"{fake_server}/_reset")
    return fake_server


def faults(url, *names):
    httpx.post(f"{url}/_faults", json={"faults": list(names)})


def stats(url):
    return httpx.get(f"{url}/_stats").json()


def make_settings(url, **gateway):
    config = dict(concurrency=4, max_retries=3, backoff_base_s=0.01, timeout_s=1.0, token_safety_factor=1.0)
    config.update(gateway)
    return Settings(
        gateway=GatewaySettings(**config),
        models={
            "fake/m": ModelConfig(api_base=f"{url}/v1", input_per_mtok=1000, output_per_mtok=2000),
            "fake/base": ModelConfig(api_base=f"{url}/v1", completion_only=True, input_per_mtok=1, output_per_mtok=1),
            "openai/gpt-4o-mini": ModelConfig(api_base=f"{url}/v1", via_litellm=True),
        },
    )


async def test_call_reports_tokens_cost_and_then_hits_the_cache(server, engine):
    async with Gateway(make_settings(server), engine=engine) as gw:
        first = await gw.call("fake/m", messages=CHAT, params={"max_tokens": 5})
        again = await gw.call("fake/m", messages=CHAT, params={"max_tokens": 5})
    assert first.output == "echo: Classify: I loved it" and not first.cached
    assert first.output_tokens == 5 and first.input_tokens > 5
    assert first.cost == pytest.approx(first.input_tokens * 1e-3 + 5 * 2e-3)
    assert again.cached and again.spent == 0 and again.cost == first.cost and again.output == first.output
    assert stats(server)["answered"] == 1


async def test_cache_survives_a_new_gateway(server, engine):
    settings = make_settings(server)
    async with Gateway(settings, engine=engine) as gw:
        await gw.call("fake/base", text="Review: ok\nSentiment:", params={"max_tokens": 3}, seed=1)
    async with Gateway(settings, engine=engine) as gw:
        hit = await gw.call("fake/base", text="Review: ok\nSentiment:", params={"max_tokens": 3}, seed=1)
        miss = await gw.call("fake/base", text="Review: ok\nSentiment:", params={"max_tokens": 3}, seed=2)
    assert hit.cached and not miss.cached and stats(server)["answered"] == 2


@pytest.mark.parametrize("fault", ["500", "503", "malformed", "timeout"])
async def test_transient_faults_are_retried(server, fault):
    faults(server, fault, fault)
    async with Gateway(make_settings(server)) as gw:
        result = await gw.call("fake/m", messages=CHAT, params={"max_tokens": 2})
    assert result.attempts == 3 and result.output.startswith("echo")


async def test_429_honours_retry_after(server):
    faults(server, "429:1")
    started = time.monotonic()
    async with Gateway(make_settings(server)) as gw:
        result = await gw.call("fake/m", messages=CHAT, params={"max_tokens": 2})
    assert result.attempts == 2 and time.monotonic() - started >= 1.0


async def test_retry_limit_gives_a_clear_error(server):
    faults(server, "500", "500", "500", "500", "500")
    async with Gateway(make_settings(server)) as gw:
        with pytest.raises(ProviderUnavailable, match="gave up after 4 attempts; last error: 500"):
            await gw.call("fake/m", messages=CHAT, params={"max_tokens": 2})
    assert stats(server)["requests"] == 4


async def test_client_error_is_not_retried(server):
    faults(server, "400")
    async with Gateway(make_settings(server)) as gw:
        with pytest.raises(GatewayError, match="400"):
            await gw.call("fake/m", messages=CHAT, params={"max_tokens": 2})
    assert stats(server)["requests"] == 1


async def test_a_redirect_is_not_followed(server):
    faults(server, "307")  # allowed_hosts was checked for api_base, not for where a redirect points
    async with Gateway(make_settings(server)) as gw:
        with pytest.raises(GatewayError, match="307 redirect .* to 'http://elsewhere.invalid/v1/chat/completions', "
                                               "not followed") as caught:
            await gw.call("fake/m", messages=CHAT, params={"max_tokens": 2})
    assert "api_base to the final address" in str(caught.value)
    assert stats(server)["requests"] == 1  # not retried, not followed


async def test_concurrency_bound_holds(server):
    faults(server, *["slow:100"] * 24)
    async with Gateway(make_settings(server, concurrency=3)) as gw:
        calls = [gw.call("fake/m", messages=[{"role": "user", "content": f"n{i}"}]) for i in range(24)]
        await asyncio.gather(*calls)
    assert stats(server)["peak_inflight"] == 3


@pytest.mark.parametrize("n", [1, 7])
async def test_a_dollar_cap_worth_n_calls_makes_exactly_n(server, n):
    settings = make_settings(server, concurrency=8)
    async with Gateway(settings) as gw:
        prompts = [[{"role": "user", "content": f"item {i:03d}"}] for i in range(n + 5)]
        per_call = gw.worst_case_cost(gw.model("fake/m"), prompts[0], 4)
        ledger = Ledger(max_dollars=per_call * n)
        results = await asyncio.gather(
            *[gw.call("fake/m", messages=p, params={"max_tokens": 4}, ledger=ledger) for p in prompts],
            return_exceptions=True,
        )
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SpendCapReached)]
    assert len(made) == n and len(refused) == 5
    assert stats(server)["answered"] == n
    assert ledger.spent == pytest.approx(per_call * n) and ledger.spent <= ledger.max_dollars + 1e-12


async def test_a_call_cap_makes_exactly_n(server):
    ledger = Ledger(max_calls=4)
    async with Gateway(make_settings(server)) as gw:
        results = await asyncio.gather(
            *[gw.call("fake/m", messages=[{"role": "user", "content": str(i)}], ledger=ledger) for i in range(10)],
            return_exceptions=True,
        )
    assert sum(not isinstance(r, BaseException) for r in results) == 4
    assert stats(server)["answered"] == 4 and ledger.calls == 4


async def test_identical_calls_in_flight_are_merged(server):
    faults(server, "slow:200")
    async with Gateway(make_settings(server)) as gw:
        results = await asyncio.gather(*[gw.call("fake/m", messages=CHAT) for _ in range(5)])
    assert stats(server)["requests"] == 1
    assert sum(r.cached for r in results) == 4 and sum(r.spent > 0 for r in results) == 1


async def test_litellm_route_is_priced_from_its_map_and_retried(server):
    faults(server, "500")
    async with Gateway(make_settings(server)) as gw:
        result = await gw.call("openai/gpt-4o-mini", messages=CHAT, params={"max_tokens": 3})
        model = gw.model("openai/gpt-4o-mini")
    assert result.attempts == 2 and result.output.startswith("echo")
    assert model.price_source.startswith("litellm price map") and not result.cost_is_estimate
    assert result.cost == pytest.approx(model.price(result.input_tokens, 3))


async def test_bad_calls_are_user_errors(server):
    async with Gateway(make_settings(server)) as gw:
        with pytest.raises(ConfigError, match="base"):
            await gw.call("fake/base", messages=CHAT)
        with pytest.raises(UserError, match="either messages or text"):
            await gw.call("fake/m")
        with pytest.raises(ConfigError, match="unknown local model"):
            await gw.call("local/nope", text="x")


async def test_missing_key_is_reported_without_the_key(server, monkeypatch):
    settings = make_settings(server)
    settings.models["fake/keyed"] = ModelConfig(api_base=f"{server}/v1", api_key_env="TRIMLOOP_TEST_KEY_XYZ")
    monkeypatch.delenv("TRIMLOOP_TEST_KEY_XYZ", raising=False)
    async with Gateway(settings) as gw:
        with pytest.raises(GatewayError, match="TRIMLOOP_TEST_KEY_XYZ is not set"):
            await gw.call("fake/keyed", messages=CHAT)


# The same gateway with a fake provider (trimloop.testing): scripted answers, faults and usage, no
# HTTP. The cap, cache, merging and retries below are Gateway's own; only the wire is replaced.

def provider_settings(**gateway) -> Settings:
    config = dict(max_retries=3, backoff_base_s=0.001, backoff_max_s=2.0)
    config.update(gateway)
    return Settings(gateway=GatewaySettings(**config),
                    models={"fake/m": fake_model(input_per_mtok=1000, output_per_mtok=2000)})


async def test_a_call_whose_worst_case_could_pass_the_cap_is_refused_before_it_is_made():
    provider = FakeProvider(responder=lambda model, prompt: "positive")
    async with Gateway(provider_settings(), provider=provider) as gw:
        model = gw.model("fake/m")
        tokens = count_message_tokens(CHAT)
        actual = model.price(tokens, 1)  # what the one-token answer costs at the catalog's price
        worst = model.price(math.ceil(tokens * 1.25), 50)  # prompt with the safety margin, all of max_tokens
        assert gw.worst_case_cost(model, CHAT, 50) == pytest.approx(worst) and worst > 2 * actual
        ledger = Ledger(max_dollars=2 * actual)
        with pytest.raises(SpendCapReached, match="next call could cost"):
            await gw.call("fake/m", messages=CHAT, params={"max_tokens": 50}, ledger=ledger)
        assert provider.attempts == 0 and ledger.calls == 0 and ledger.spent == 0
        made = await gw.call("fake/m", messages=CHAT, params={"max_tokens": 1}, ledger=ledger)
    assert made.output == "positive" and made.spent == pytest.approx(actual)
    assert ledger.calls == 1 and ledger.spent == pytest.approx(actual) and ledger.spent <= ledger.max_dollars


async def test_concurrent_calls_spend_at_most_the_cap_and_the_spend_is_the_priced_usage():
    provider = FakeProvider(responder=lambda model, prompt: "a long answer " * 20)  # cut at max_tokens
    async with Gateway(provider_settings(concurrency=8), provider=provider) as gw:
        ledger = Ledger(max_dollars=0.25)
        results = await asyncio.gather(
            *[gw.call("fake/m", messages=[{"role": "user", "content": f"item {i}"}], params={"max_tokens": 16},
                      ledger=ledger) for i in range(40)], return_exceptions=True)
        model = gw.model("fake/m")
    made = [r for r in results if not isinstance(r, BaseException)]
    assert made and all(isinstance(r, SpendCapReached) for r in results if isinstance(r, BaseException))
    assert len(made) < 40 and len(made) == len(provider.calls) == ledger.calls
    assert all(c["output_tokens"] == 16 for c in provider.calls)
    billed = sum(model.price(c["input_tokens"], c["output_tokens"]) for c in provider.calls)
    assert ledger.spent == pytest.approx(billed) and ledger.spent <= ledger.max_dollars


async def test_a_second_gateway_over_the_database_pays_nothing_for_calls_already_answered(engine):
    settings = provider_settings()
    prompts = [f"Review: {word}\nSentiment:" for word in ("fine", "dull", "grand")]
    first = FakeProvider(responder=lambda model, prompt: " positive")
    async with Gateway(settings, engine=engine, provider=first) as gw:
        paid = [await gw.call("fake/m", text=p, params={"max_tokens": 2}, ledger=Ledger()) for p in prompts]
    second, ledger = FakeProvider(responder=lambda model, prompt: " negative"), Ledger(max_dollars=1.0)
    async with Gateway(settings, engine=engine, provider=second) as gw:  # a new process, the same database
        again = [await gw.call("fake/m", text=p, params={"max_tokens": 2}, ledger=ledger) for p in prompts]
        new = await gw.call("fake/m", text="Review: awful\nSentiment:", params={"max_tokens": 2}, ledger=ledger)
    assert [r.output for r in again] == [" positive"] * 3 and all(r.cached and r.spent == 0 for r in again)
    assert [r.cost for r in again] == [r.cost for r in paid]  # what the answer cost, as first paid
    assert [c["prompt"] for c in second.calls] == ["Review: awful\nSentiment:"] and new.output == " negative"
    assert ledger.cache_hits == 3 and ledger.calls == 1 and ledger.spent == pytest.approx(new.cost)


async def test_429_5xx_and_malformed_replies_are_retried_then_paid_once():
    provider = FakeProvider(responder=lambda model, prompt: "positive")
    provider.fail(Retryable("429 rate limited", retry_after=0.3), Retryable("503 server error: busy"),
                  Retryable("malformed response body (KeyError): {}"))
    ledger = Ledger()
    started = time.monotonic()
    async with Gateway(provider_settings(), provider=provider) as gw:
        result = await gw.call("fake/m", messages=CHAT, params={"max_tokens": 2}, ledger=ledger)
    assert time.monotonic() - started >= 0.3  # Retry-After honoured over the (1 ms) backoff
    assert result.output == "positive" and result.attempts == 4 == provider.attempts and gw.stats.retries == 3
    assert ledger.calls == 1 and ledger.spent == pytest.approx(result.cost) and len(provider.calls) == 1


async def test_giving_up_raises_provider_unavailable_and_releases_the_reservation():
    def down(model, prompt):
        raise Retryable("503 server error: down")

    provider = FakeProvider(responder=down)
    async with Gateway(provider_settings(max_retries=2), provider=provider) as gw:
        worst = gw.worst_case_cost(gw.model("fake/m"), CHAT, 2)
        ledger = Ledger(max_dollars=worst)  # room for exactly one call in flight
        with pytest.raises(ProviderUnavailable, match="gave up after 3 attempts; last error: 503 server error: down"):
            await gw.call("fake/m", messages=CHAT, params={"max_tokens": 2}, ledger=ledger)
        assert provider.attempts == 3 and ledger.calls == 0 and ledger.spent == 0
        provider.responder = lambda model, prompt: "positive"  # back up: the released room takes the call
        result = await gw.call("fake/m", messages=CHAT, params={"max_tokens": 2}, ledger=ledger)
    assert not result.cached and ledger.calls == 1 and gw.stats.failures == 1


async def test_a_fatal_reply_is_not_retried_and_waiters_on_the_same_call_share_the_error(engine):
    provider = FakeProvider(responder=lambda model, prompt: "positive", latency_s=0.05)
    provider.fail(Fatal("400 from fake: bad params", hint="check the model's params"))
    async with Gateway(provider_settings(), engine=engine, provider=provider) as gw:
        results = await asyncio.gather(*[gw.call("fake/m", messages=CHAT) for _ in range(3)], return_exceptions=True)
        assert provider.attempts == 1 and all(isinstance(r, GatewayError) for r in results)
        assert "400 from fake: bad params" in str(results[0]) and results[0].hint == "check the model's params"
        retried = await gw.call("fake/m", messages=CHAT)  # a failure is never cached
    assert retried.output == "positive" and not retried.cached and provider.attempts == 2


async def test_without_usage_the_gateway_counts_tokens_itself():
    with_usage, without = FakeProvider(outputs=["a fine answer"]), FakeProvider(outputs=["a fine answer"], usage=False)
    async with Gateway(provider_settings(), provider=with_usage) as gw:
        reported = await gw.call("fake/m", text="Review: fine\nSentiment:")
    async with Gateway(provider_settings(), provider=without) as gw:
        counted = await gw.call("fake/m", text="Review: fine\nSentiment:")
    assert (counted.input_tokens, counted.output_tokens) == (reported.input_tokens, reported.output_tokens) == (
        count_tokens("Review: fine\nSentiment:"), count_tokens("a fine answer"))
    assert counted.cost == reported.cost


@pytest.mark.parametrize("params", [
    {"api_base": "{server}/v1"}, {"base_url": "{server}/v1"}, {"extra_headers": {"X-Leak": "1"}},
    {"aws_bedrock_runtime_endpoint": "{server}"}, {"langfuse_host": "{server}"}, {"vertex_credentials": "{}"},
])
async def test_a_prompts_params_cannot_send_the_call_and_its_key_elsewhere(server, monkeypatch, params):
    # a hosted model (no api_base in trimloop.toml) with its key in the environment: before, a prompt
    # whose params (from its store) said api_base sent the request and the key to that address
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-the-prompt-store")
    params = {k: v.replace("{server}", server) if isinstance(v, str) else v for k, v in params.items()}
    async with Gateway(make_settings(server, max_retries=0)) as gw:
        with pytest.raises(ConfigError, match="would choose where the call goes") as raised:
            await gw.call("openai/gpt-4o", messages=CHAT, params={"max_tokens": 3, **params})
    assert next(iter(params)) in raised.value.hint and "trimloop.toml" in raised.value.hint
    assert stats(server)["requests"] == 0


async def test_request_params_that_look_like_routing_ones_still_go_through(server):
    async with Gateway(make_settings(server)) as gw:
        result = await gw.call("fake/m", messages=CHAT, params={
            "max_tokens": 3, "prompt_cache_key": "support-bot", "max_completion_tokens": 3, "timeout": 5})
    assert result.output.startswith("echo")


async def test_a_cache_hit_reports_the_token_classes_of_the_call_it_replays(engine):
    """Before, a hit had no cached or reasoning tokens: a rerun measured a reasoning candidate at 0."""
    long_system = "You sort support tickets. " * 300  # over OpenAI's 1,024-token caching minimum
    messages = [{"role": "system", "content": long_system}, {"role": "user", "content": "Ticket: refund please"}]
    with running("--reasoning-tokens", "40", "--prompt-cache", "openai") as url:
        settings = make_settings(url)
        async with Gateway(settings, engine=engine) as gw:
            await gw.call("fake/m", messages=messages, params={"max_tokens": 5, "seed": 1})  # writes the prefix
            paid = await gw.call("fake/m", messages=messages, params={"max_tokens": 5})
        async with Gateway(settings, engine=engine) as again:
            hit = await again.call("fake/m", messages=messages, params={"max_tokens": 5})
        assert stats(url)["answered"] == 2
    assert paid.reasoning_tokens == 40 and paid.cached_tokens and paid.cached_tokens > 1000
    assert hit.cached and hit.spent == 0
    assert hit.usage == paid.usage and hit.cost == pytest.approx(paid.cost)
