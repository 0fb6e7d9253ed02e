"""The one door every LLM call goes through.

`Gateway.call` takes chat messages or plain text and returns a `CallResult`: output, tokens,
cost, latency, and whether it came from the cache. On the way it
- answers from the content-addressed cache in the database when it can (a rerun spends nothing),
  and merges identical calls that are in flight at the same time; a paid answer is committed to
  the cache before it is returned, so a process killed after using it never pays for it again;
- reserves the call's worst-case cost on the run's `Ledger` and refuses it if that could pass the cap;
- bounds in-flight calls per provider, and retries 429 (honouring Retry-After), 5xx, timeouts
  and malformed bodies with exponential backoff and jitter, up to a limit;
- records every token class the provider reports (cached, cache-write, reasoning; else tiktoken
  counts) and prices them with the catalog's price sheet (`core.pricing`): unknown price, cost None.

OpenAI-compatible endpoints (the bundled llama.cpp models, any `api_base`) are called directly
over a pooled aiohttp session; every other provider goes through litellm. Tests give it one
`provider=` for every model instead (`trimloop.testing.FakeProvider`): all the rest is this code.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Engine

from trimloop.core.catalog import (
    ResolvedModel,
    count_message_tokens,
    count_tokens,
    resolve_model,
)
from trimloop.core.errors import ConfigError, GatewayError, ProviderUnavailable, UserError
from trimloop.core.ledger import Ledger
from trimloop.core.llm_cache import CachedCall, ResponseCache, cache_key
from trimloop.core.providers import DirectProvider, Fatal, LiteLLMProvider, Provider, RawReply, Retryable
from trimloop.core.settings import Settings
from trimloop.core.usage import TokenUsage

Prompt = list[dict[str, str]] | str


@dataclass(frozen=True)
class CallResult:
    output: str
    model: str
    input_tokens: int
    output_tokens: int
    cost: float | None  # what this call costs at the model's price sheet; None when the price is unknown
    spent: float  # what it spent now (known prices only): 0 on a cache hit
    latency_s: float  # the provider's latency (a cache hit keeps the original's)
    cached: bool
    cost_is_estimate: bool
    key: str
    attempts: int = 1
    cached_tokens: int | None = None  # prompt tokens read from the provider's cache (part of input_tokens)
    cache_write_tokens: int | None = None  # prompt tokens written to it (part of input_tokens)
    reasoning_tokens: int | None = None  # part of output_tokens
    ttft_s: float | None = None  # time to first token, on a streamed call (params stream = true); not cached

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(self.input_tokens, self.output_tokens, self.cached_tokens, self.cache_write_tokens,
                          self.reasoning_tokens)


@dataclass
class GatewayStats:
    calls: int = 0
    cache_hits: int = 0
    merged: int = 0
    retries: int = 0
    failures: int = 0


# A prompt's params come from its store (front-matter, a Langfuse config, an MLflow model_config):
# whoever can edit a prompt there must not be able to send the call, and the key that goes with it,
# somewhere else, or switch on litellm's callbacks and overrides. Where a call goes and with which
# credentials is set in trimloop.toml (`[models."id"]`, checked against allowed_hosts) and the
# environment, nowhere else. These names and shapes are litellm's own routing, credential,
# callback and pricing arguments (`litellm.types.utils.all_litellm_params` and the provider
# credentials litellm reads from kwargs), not a provider's request parameters.
ROUTING_PARAMS = frozenset({
    "api_base", "base_url", "api_key", "api_version", "api_type", "organization", "custom_llm_provider",
    "extra_headers", "headers", "deployment_id", "model_list", "shared_session", "client", "fallbacks",
    "context_window_fallback_dict", "mock_response", "mock_timeout", "logger_fn", "callbacks",
    "success_callback", "failure_callback", "ssl_verify", "proxy", "http_client", "model_info", "base_model", "region_name",
    "tenant_id", "client_id", "client_secret"})
ROUTING_PREFIXES = ("aws_", "vertex_", "vertexai_", "azure_", "watsonx_", "sagemaker_", "bedrock_", "litellm_",
                    "langfuse_", "langsmith_", "s3_", "gcs_", "dd_", "arize_", "posthog_", "newrelic_", "wandb_",
                    "humanloop_", "anthropic_identity", "anthropic_issuer", "anthropic_keycloak", "openai_identity",
                    "token_exchange_", "input_cost_", "output_cost_", "cache_read_input", "cache_creation_input")
ROUTING_SUFFIXES = ("_api_key", "_key_id", "_secret", "_secret_key", "_token", "_url", "_endpoint", "_host",
                    "_base", "_credentials", "_password", "_file")
PROVIDER_PARAMS_LIKE_THOSE = frozenset({"prompt_cache_key"})  # OpenAI's own request field, sent as is


def check_params(model: str, params: dict[str, Any]) -> None:
    """Refuse params that would route, authenticate or reconfigure the call (see ROUTING_PARAMS)."""
    refused = sorted(
        name for name in params
        if name not in PROVIDER_PARAMS_LIKE_THOSE and (
            name in ROUTING_PARAMS or name.startswith(ROUTING_PREFIXES) or name.endswith(ROUTING_SUFFIXES)))
    if refused:
        raise ConfigError(
            f"{model}: the prompt's params {', '.join(refused)} would choose where the call goes, with which "
            "credentials or callbacks; the gateway takes those only from trimloop.toml and the environment",
            where="the prompt version's params (from its store)",
            hint=f'remove {", ".join(refused)} from the prompt\'s params in its store; set an endpoint as '
                 f'api_base under [models."{model}"] in trimloop.toml (checked against allowed_hosts) and '
                 "keys in environment variables")


def _check_prompt(messages: list[dict[str, str]] | None, text: str | None) -> Prompt:
    if (messages is None) == (text is None):
        raise UserError("give either messages or text, not both or neither", where="gateway call")
    if messages is not None:
        if not messages or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
            raise UserError(
                "messages must be a non-empty list of {role, content}", where="gateway call"
            )
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    return str(text)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        cache: bool | None = None,
        before_first_call: Callable[[str], None] | None = None,
        provider: Provider | None = None,
    ):
        """`before_first_call(model_id)` runs (in a thread) before a model's first real call,
        e.g. `local_models.LazyStarter` to start a bundled model only when a call needs it.
        `provider` answers every model's calls in place of the one its route picks (tests)."""
        self.settings = settings
        self._provider = provider
        self._before_first_call = before_first_call
        self._engine = engine
        self._prepared: dict[str, asyncio.Task[None]] = {}
        use_cache = settings.gateway.cache if cache is None else cache
        self.cache = ResponseCache(engine) if engine is not None and use_cache else None
        self.stats = GatewayStats()
        self._direct = DirectProvider(settings.gateway.timeout_s)
        self._litellm = LiteLLMProvider(settings.gateway.timeout_s)
        self._models: dict[str, ResolvedModel] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._inflight: dict[str, asyncio.Future[CallResult]] = {}

    def model(self, model_id: str) -> ResolvedModel:
        resolved = self._models.get(model_id)
        if resolved is None:
            resolved = self._models[model_id] = resolve_model(self.settings, model_id)
        return resolved

    async def call(
        self,
        model: str,
        *,
        messages: list[dict[str, str]] | None = None,
        text: str | None = None,
        params: dict[str, Any] | None = None,
        seed: int | None = None,
        ledger: Ledger | None = None,
        scope: str | None = None,
    ) -> CallResult:
        """One call. `scope` caches the answer apart from the same request made outside the scope
        (a run's baseline control arm: fresh once per run, not the answer another run paid for)."""
        prompt = _check_prompt(messages, text)
        resolved = self.model(model)
        if resolved.completion_only and isinstance(prompt, list):
            raise ConfigError(
                f"{model} is a base (completion) model and cannot take chat messages",
                where="gateway call",
                hint="give it a plain-text template (completion style)",
            )
        wire = {k: v for k, v in (params or {}).items() if v is not None}
        check_params(model, wire)
        wire.setdefault("max_tokens", self.settings.gateway.default_max_tokens)
        if seed is not None:
            wire["seed"] = seed
        key = cache_key(model=model, prompt=prompt, params=wire, seed=seed, scope=scope)

        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return self._from_cache(resolved, key, hit, ledger)
        pending = self._inflight.get(key)
        if pending is not None:
            first = await asyncio.shield(pending)
            self.stats.merged += 1
            if ledger:
                ledger.note_cache_hit()
            return _as_hit(first)

        future: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._call_uncached(resolved, prompt, wire, key, ledger)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    async def _call_uncached(
        self, model: ResolvedModel, prompt: Prompt, wire: dict[str, Any], key: str, ledger: Ledger | None
    ) -> CallResult:
        worst = self.worst_case_cost(model, prompt, int(wire["max_tokens"])) if ledger else 0.0
        if ledger:
            ledger.reserve(worst)
        try:
            await self._prepare(model.id)
            reply, latency, attempts = await self._with_retries(model, prompt, wire)
        except BaseException:
            if ledger:
                ledger.release(worst)
            raise
        input_tokens = reply.input_tokens
        if input_tokens is None:
            input_tokens = count_message_tokens(prompt) if isinstance(prompt, list) else count_tokens(prompt)
        output_tokens = reply.output_tokens if reply.output_tokens is not None else count_tokens(reply.output)
        usage = TokenUsage(input_tokens, output_tokens, reply.cached, reply.cache_write, reply.reasoning)
        cost = model.cost(usage)
        spent = cost or 0.0  # an unknown price cannot be counted against the cap
        if ledger:
            ledger.settle(worst, spent)
        self.stats.calls += 1
        if self.cache is not None:  # committed before the caller sees the result: a crash cannot lose it
            await self.cache.store(key, model.id, CachedCall(reply.output, input_tokens, output_tokens, spent, latency,
                                                             reply.cached, reply.cache_write, reply.reasoning),
                                   run_id=ledger.run_id if ledger else None)
        return CallResult(
            output=reply.output,
            model=model.id,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            spent=spent,
            latency_s=latency,
            cached=False,
            cost_is_estimate=model.price_is_estimate,
            key=key,
            attempts=attempts,
            cached_tokens=reply.cached,
            cache_write_tokens=reply.cache_write,
            reasoning_tokens=reply.reasoning,
            ttft_s=reply.ttft_s,
        )

    async def _prepare(self, model_id: str) -> None:
        if self._before_first_call is None:
            return
        task = self._prepared.get(model_id)
        if task is None:
            hook = self._before_first_call
            task = self._prepared[model_id] = asyncio.ensure_future(asyncio.to_thread(hook, model_id))
        try:
            await asyncio.shield(task)
        except BaseException:
            if task.done():
                self._prepared.pop(model_id, None)  # let a later call try again
            raise

    def worst_case_cost(self, model: ResolvedModel, prompt: Prompt, max_tokens: int) -> float:
        tokens = count_message_tokens(prompt) if isinstance(prompt, list) else count_tokens(prompt)
        if not model.openai_tokenizer:
            tokens = math.ceil(tokens * self.settings.gateway.token_safety_factor)
        return model.price(tokens, max_tokens)

    async def _with_retries(
        self, model: ResolvedModel, prompt: Prompt, wire: dict[str, Any]
    ) -> tuple[RawReply, float, int]:
        config = self.settings.gateway
        provider = self._provider or (self._direct if model.route == "direct" else self._litellm)
        limit = self._limits.get(model.provider)
        if limit is None:
            limit = self._limits[model.provider] = asyncio.Semaphore(model.concurrency)
        last = ""
        for attempt in range(config.max_retries + 1):
            async with limit:
                started = time.perf_counter()
                try:
                    reply = await provider.call(model, prompt, wire)
                    return reply, time.perf_counter() - started, attempt + 1
                except Retryable as exc:
                    last, retry_after = redact(str(exc), model), exc.retry_after
                except Fatal as exc:
                    self.stats.failures += 1
                    raise GatewayError(
                        f"{model.id}: {redact(str(exc), model)}", where=model.api_base or model.provider,
                        hint=exc.hint,
                    ) from None
            if attempt == config.max_retries:
                break
            self.stats.retries += 1
            backoff = min(config.backoff_max_s, config.backoff_base_s * 2**attempt)
            delay = backoff * random.uniform(0.5, 1.0)  # jitter
            if retry_after is not None:
                delay = max(delay, min(retry_after, config.backoff_max_s))
            await asyncio.sleep(delay)
        self.stats.failures += 1
        raise ProviderUnavailable(
            f"{model.id}: gave up after {config.max_retries + 1} attempts; last error: {last}",
            where=model.api_base or model.provider,
            hint="the provider kept failing; check it is up, or raise gateway.max_retries / timeout_s",
        )

    def _from_cache(
        self, model: ResolvedModel, key: str, hit: CachedCall, ledger: Ledger | None
    ) -> CallResult:
        self.stats.cache_hits += 1
        if ledger:
            ledger.note_cache_hit()
        return CallResult(
            output=hit.output,
            model=model.id,
            input_tokens=hit.input_tokens,
            output_tokens=hit.output_tokens,
            cost=hit.cost if model.prices.known else None,
            spent=0.0,
            latency_s=hit.latency_s,
            cached=True,
            cost_is_estimate=model.price_is_estimate,
            key=key,
            attempts=0,
            cached_tokens=hit.cached_tokens,
            cache_write_tokens=hit.cache_write_tokens,
            reasoning_tokens=hit.reasoning_tokens,
        )

    def flush(self) -> None:
        """Write pending cache entries now (`call` itself returns only once its entry is written)."""
        if self.cache is not None:
            self.cache.flush()

    def for_another_loop(self) -> "Gateway":
        """A gateway like this one (settings, response cache database, model starter) for another
        thread's event loop: HTTP sessions and locks belong to the loop that made them."""
        return Gateway(self.settings, engine=self._engine, cache=self.cache is not None,
                       before_first_call=self._before_first_call, provider=self._provider)

    async def aclose(self) -> None:
        await self._direct.aclose()
        if self.cache is not None:
            await self.cache.aclose()

    async def __aenter__(self) -> "Gateway":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def redact(text: str, model: ResolvedModel) -> str:
    """The text without the model's API key: providers may quote the key in their error bodies."""
    key = os.environ.get(model.api_key_env) if model.api_key_env else None
    return text.replace(key, "[redacted]") if key else text


def _as_hit(result: CallResult) -> CallResult:
    return replace(result, spent=0.0, cached=True, attempts=0)

