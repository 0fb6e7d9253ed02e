"""How a call reaches a model: directly to an OpenAI-compatible endpoint, or through litellm.

Both return a `RawReply` or raise `Retryable` (429, 5xx, timeout, malformed body) or `Fatal`
(any other 4xx, a missing key). The retry policy lives in the gateway, not here.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

import aiohttp

from trimloop.core.catalog import ResolvedModel, import_litellm
from trimloop.core.usage import usage_from


@dataclass(frozen=True)
class RawReply:
    """An answer and the usage the provider reported (None: not reported). `cached` and
    `cache_write` are parts of `input_tokens`, `reasoning` a part of `output_tokens` (core.usage)."""

    output: str
    input_tokens: int | None
    output_tokens: int | None
    cached: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    ttft_s: float | None = None  # time to the first token, on a streamed call (params `stream = true`)


def reply_with_usage(text: str, usage: Any) -> RawReply:
    """A RawReply with the token classes of a usage object in any shape core.usage reads."""
    if usage is not None and not isinstance(usage, dict):
        dump = getattr(usage, "model_dump", None)  # litellm's (and openai's) pydantic Usage
        usage = dump() if callable(dump) else dict(getattr(usage, "__dict__", {}))
    found = usage_from(usage)
    return RawReply(text, found.input, found.output, found.cached, found.cache_write, found.reasoning)


class Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class Fatal(Exception):
    def __init__(self, reason: str, hint: str | None = None):
        super().__init__(reason)
        self.hint = hint


class Provider(Protocol):
    """One way to reach a model; the gateway picks one by `model.route` (tests give their own)."""

    async def call(
        self, model: ResolvedModel, prompt: list[dict[str, str]] | str, params: dict[str, Any]
    ) -> RawReply: ...


def api_key_for(model: ResolvedModel) -> str | None:
    if not model.api_key_env:
        return model.api_key  # the bundled models' per-home key, else None
    key = os.environ.get(model.api_key_env)
    if not key:
        raise Fatal(
            f"no API key: environment variable {model.api_key_env} is not set",
            hint=f"export {model.api_key_env}=… (keys are read from the environment only)",
        )
    return key


def _events(raw: bytes) -> list[dict[str, Any]]:
    """The JSON events of a server-sent-events body (`data: {...}` lines, up to `data: [DONE]`)."""
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        out.append(json.loads(data))
    return out


def _piece(event: dict[str, Any], chat: bool) -> str:
    choices = event.get("choices") or []
    if not choices:
        return ""
    part = (choices[0].get("delta") or {}).get("content") if chat else choices[0].get("text")
    return part if isinstance(part, str) else ""


def _has_token(line: bytes, chat: bool) -> bool:
    """Whether this stream line carries the first piece of the answer."""
    try:
        return any(_piece(e, chat) for e in _events(line))
    except ValueError:
        return False


def _streamed_reply(raw: bytes, chat: bool, ttft: float | None) -> RawReply:
    try:
        events = _events(raw)
    except ValueError as exc:
        raise Retryable(f"malformed stream ({exc.__class__.__name__}): {_snippet(raw)}") from None
    if not events:
        raise Retryable(f"empty stream: {_snippet(raw)}")
    text = "".join(_piece(e, chat) for e in events)
    usage = next((e["usage"] for e in reversed(events) if e.get("usage")), {})
    return replace(reply_with_usage(text, usage), ttft_s=ttft)


class DirectProvider:
    """OpenAI-compatible `/chat/completions` and `/completions` over one pooled aiohttp session."""

    def __init__(self, timeout_s: float):
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=self._timeout,
                json_serialize=json.dumps,
            )
        return self._session

    async def call(
        self, model: ResolvedModel, prompt: list[dict[str, str]] | str, params: dict[str, Any]
    ) -> RawReply:
        chat = isinstance(prompt, list)
        url = f"{model.api_base}/{'chat/completions' if chat else 'completions'}"
        body = {"model": model.wire_model, **params}
        body["messages" if chat else "prompt"] = prompt
        headers = {}
        key = api_key_for(model)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        streamed = bool(params.get("stream"))
        if streamed:  # the usage rides on the last chunk (OpenAI's stream_options.include_usage)
            body["stream_options"] = {"include_usage": True}
        first: float | None = None
        try:
            sent = time.perf_counter()
            # never follow a redirect: allowed_hosts was checked for api_base, not for where it points
            async with self._client().post(url, json=body, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                if streamed and status == 200:
                    chunks = []
                    async for line in resp.content:
                        chunks.append(line)
                        if first is None and _has_token(line, chat):
                            first = time.perf_counter() - sent
                    raw = b"".join(chunks)
                else:
                    raw = await resp.read()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                location = resp.headers.get("Location", "?")
        except asyncio.TimeoutError:
            raise Retryable(f"timed out after {self._timeout.total:.0f}s") from None
        except aiohttp.ClientError as exc:
            raise Retryable(f"connection failed: {exc.__class__.__name__}: {exc}") from None
        if status == 429:
            raise Retryable("429 rate limited", retry_after)
        if status >= 500 or status == 408:
            raise Retryable(f"{status} server error: {_snippet(raw)}", retry_after)
        if 300 <= status < 400:
            raise Fatal(f"{status} redirect from {url} to {location!r}, not followed",
                        hint="set the model's api_base to the final address (redirects are never followed, so a "
                             "call cannot leave the hosts allowed_hosts lists)")
        if status >= 400:
            raise Fatal(f"{status} from {url}: {_snippet(raw)}", hint=_hint_for(status))
        if streamed:
            return _streamed_reply(raw, chat, first)
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"] if chat else choice["text"]
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise Retryable(f"malformed response body ({exc.__class__.__name__}): {_snippet(raw)}") from None
        return reply_with_usage(text, data.get("usage") or {})

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class LiteLLMProvider:
    """Every provider litellm knows (OpenAI, Anthropic, Gemini …), retries left to the gateway."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s

    async def call(
        self, model: ResolvedModel, prompt: list[dict[str, str]] | str, params: dict[str, Any]
    ) -> RawReply:
        litellm = import_litellm()
        kwargs: dict[str, Any] = dict(params, timeout=self.timeout_s, num_retries=0)
        key = api_key_for(model)
        if key:
            kwargs["api_key"] = key
        if model.api_base:
            kwargs["api_base"] = model.api_base
            kwargs.setdefault("api_key", "none")  # OpenAI-compatible servers often need no key
        try:
            if isinstance(prompt, list):
                resp = await litellm.acompletion(model=model.wire_model, messages=prompt, **kwargs)
                text = resp.choices[0].message.content or ""
            else:
                resp = await litellm.atext_completion(model=model.wire_model, prompt=prompt, **kwargs)
                text = resp.choices[0].text or ""
        except Exception as exc:  # litellm maps every provider's errors onto OpenAI's classes
            status = getattr(exc, "status_code", None)
            name = exc.__class__.__name__
            if name in ("RateLimitError",) or status == 429:
                raise Retryable(f"429 rate limited: {_first_line(exc)}") from None
            if name in ("Timeout", "APIConnectionError", "InternalServerError",
                        "ServiceUnavailableError", "APIError") or (status and status >= 500):
                raise Retryable(f"{name}: {_first_line(exc)}") from None
            if name == "AuthenticationError":
                raise Fatal(f"authentication failed: {_first_line(exc)}",
                            hint="check the provider's API key environment variable") from None
            raise Fatal(f"{name}: {_first_line(exc)}") from None
        return reply_with_usage(text, getattr(resp, "usage", None))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff


def _snippet(raw: bytes) -> str:
    return raw[:200].decode("utf-8", "replace").replace("\n", " ")


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0][:300]


def _hint_for(status: int) -> str:
    if status in (401, 403):
        return "check the API key for this endpoint (set the variable named by api_key_env)"
    if status == 404:
        return "check the model name and api_base (it usually ends in /v1)"
    return "the provider refused the request; check the model's params"
