"""Token classes of one call, read from whatever shape a provider or a tracing tool reports them in.

trimloop keeps one convention (OpenAI's): `input` counts every prompt token, cached and written
ones included; `cached` (cache reads) and `cache_write` are parts of it. `output` counts every
completion token, reasoning included; `reasoning` is a part of it. Anthropic reports disjoint
buckets (`input_tokens` excludes both cache buckets) and Gemini reports thinking tokens beside the
candidates, so `usage_from` adds them up into this convention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenUsage:
    input: int | None = None
    output: int | None = None
    cached: int | None = None  # cache reads, part of `input`
    cache_write: int | None = None  # tokens written to the cache, part of `input`
    reasoning: int | None = None  # part of `output`
    batch: bool = False

    @property
    def known(self) -> bool:
        return self.input is not None or self.output is not None


def whole(value: Any) -> int | None:
    """A token count, or None: bools, negatives, strings that are not numbers are no count."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and value >= 0 and value == value and value != float("inf"):
        return int(value)
    return None


def _get(data: Mapping[str, Any], *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _sum(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def usage_from(data: Mapping[str, Any] | None, *, batch: bool = False) -> TokenUsage:
    """TokenUsage from a usage object in any of these shapes (detected by their keys):

    - OpenAI chat/completions: prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens,
      completion_tokens_details.reasoning_tokens (litellm adds Anthropic's cache_creation_input_tokens);
    - OpenAI responses: input_tokens, output_tokens, input_tokens_details.cached_tokens,
      output_tokens_details.reasoning_tokens;
    - Anthropic messages: input_tokens (uncached only), cache_read_input_tokens,
      cache_creation_input_tokens, output_tokens;
    - Gemini usageMetadata: promptTokenCount, cachedContentTokenCount, candidatesTokenCount,
      thoughtsTokenCount (thoughts are billed as output but not counted in the candidates).
    """
    if not isinstance(data, Mapping):
        return TokenUsage(batch=batch)
    if "promptTokenCount" in data or "candidatesTokenCount" in data:
        thoughts = whole(data.get("thoughtsTokenCount"))
        return TokenUsage(input=whole(data.get("promptTokenCount")),
                          output=_sum(whole(data.get("candidatesTokenCount")), thoughts),
                          cached=whole(data.get("cachedContentTokenCount")), reasoning=thoughts, batch=batch)
    write = whole(data.get("cache_creation_input_tokens"))
    if "prompt_tokens" in data or "completion_tokens" in data:  # OpenAI chat (and litellm's Usage)
        cached = whole(_get(data, "prompt_tokens_details", "cached_tokens"))
        if cached is None:
            cached = whole(data.get("cache_read_input_tokens"))
        return TokenUsage(input=whole(data.get("prompt_tokens")), output=whole(data.get("completion_tokens")),
                          cached=cached, cache_write=write,
                          reasoning=whole(_get(data, "completion_tokens_details", "reasoning_tokens")), batch=batch)
    if "input_tokens_details" in data or "output_tokens_details" in data:  # OpenAI responses
        return TokenUsage(input=whole(data.get("input_tokens")), output=whole(data.get("output_tokens")),
                          cached=whole(_get(data, "input_tokens_details", "cached_tokens")),
                          reasoning=whole(_get(data, "output_tokens_details", "reasoning_tokens")), batch=batch)
    read = whole(data.get("cache_read_input_tokens"))
    if read is not None or write is not None:  # Anthropic: input_tokens excludes both cache buckets
        return TokenUsage(input=_sum(whole(data.get("input_tokens")), read, write),
                          output=whole(data.get("output_tokens")), cached=read, cache_write=write, batch=batch)
    return TokenUsage(input=whole(data.get("input_tokens")), output=whole(data.get("output_tokens")), batch=batch)


def usage_from_details(details: Mapping[str, Any] | None) -> TokenUsage:
    """Langfuse `usageDetails`: disjoint buckets. Keys starting with `input` (and the cache keys) are
    prompt tokens, keys starting with `output` completion tokens; `total` is left out. Langfuse's own
    integrations write `input_cached_tokens` / `output_reasoning_tokens` (OpenAI) and
    `cache_read_input_tokens` / `cache_creation_input_tokens` or `input_cache_read` /
    `input_cache_creation` (Anthropic)."""
    if not isinstance(details, Mapping):
        return TokenUsage()
    inputs: list[int | None] = []
    outputs: list[int | None] = []
    cached: list[int | None] = []
    write: list[int | None] = []
    reasoning: list[int | None] = []
    for key, raw in details.items():
        value, name = whole(raw), str(key).lower()
        if value is None or name == "total":
            continue
        is_read = "cache_read" in name or "cached" in name
        is_write = "cache_creation" in name or "cache_write" in name
        if name.startswith("output"):
            outputs.append(value)
            if "reasoning" in name:
                reasoning.append(value)
        elif name.startswith("input") or is_read or is_write:
            inputs.append(value)
            if is_read:
                cached.append(value)
            elif is_write:
                write.append(value)
    return TokenUsage(input=_sum(*inputs), output=_sum(*outputs), cached=_sum(*cached), cache_write=_sum(*write),
                      reasoning=_sum(*reasoning))
