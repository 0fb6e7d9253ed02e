"""JSONL log lines for the files connector, in trimloop's own shape or OpenAI's request/response.

trimloop shape (one call per line; `called_at`, a prompt reference and inputs are required):

    {"id": "call-1", "prompt": "support-triage", "version": "2", "inputs": {"ticket": "..."},
     "output": "billing", "model": "gpt-4o-mini", "input_tokens": 52, "output_tokens": 1,
     "cost": 0.0000084, "latency_s": 0.41, "called_at": "2025-06-01T12:00:00Z",
     "feedback": [{"name": "thumbs_up", "value": 1, "source": "user"}], "meta": {}}

plus an optional `sample_rate` (0.01 when the app logs one call in a hundred): each such line
counts as 1 / sample_rate calls in calls per day, spend and savings.

Token classes (trimloop shape): `cached_input_tokens` and `cache_write_tokens` are parts of
`input_tokens`, `reasoning_tokens` a part of `output_tokens`; `"batch": true` marks a batch call.

OpenAI shape: `{"request": {chat.completions.create params}, "response": {ChatCompletion}}`
plus optional `prompt`, `version`, `inputs`, `latency_s`, `feedback`, `meta`, `batch`; usage's
`prompt_tokens_details.cached_tokens` and `completion_tokens_details.reasoning_tokens` are read.

Anthropic shape: `{"request": {messages.create params}, "response": {Message}, "called_at": …}`
(a Message has no timestamp); usage's `cache_read_input_tokens` and `cache_creation_input_tokens`
are read (Anthropic's `input_tokens` leaves them out; trimloop's `input_tokens` counts them).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Annotated, Any

from typing_extensions import NotRequired, TypedDict

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trimloop.connectors.base import LogItem
from trimloop.core.tables import MAX_TOKENS
from trimloop.core.usage import TokenUsage, usage_from

Scalar = bool | int | float | str | None


class Feedback(TypedDict):
    """One piece of feedback on a call: a thumbs-up, a rating, a correction."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    name: Annotated[str, Field(min_length=1)]
    value: Scalar
    source: NotRequired[str]


class _Common(BaseModel):
    prompt: str | None = Field(default=None, min_length=1)
    version: str | None = None
    version_sha: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    inputs: dict[str, Any] | None = None
    latency_s: float | None = Field(default=None, ge=0, strict=True)  # "1.2" or true are errors
    cost: float | None = Field(default=None, ge=0, strict=True)
    sample_rate: float | None = Field(default=None, gt=0, le=1, strict=True, description="share of calls logged")
    feedback: list[Feedback] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    batch: bool = Field(default=False, strict=True)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TrimloopLine(_Common):
    model_config = {"extra": "forbid"}
    id: str | None = Field(default=None, min_length=1)
    called_at: datetime
    messages: list[dict[str, Any]] | None = None
    output: str | None = None
    model: str | None = None
    input_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS, strict=True)
    output_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS, strict=True)
    cached_input_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS, strict=True)
    cache_write_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS, strict=True)
    reasoning_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS, strict=True)


class OpenAIRequest(BaseModel):
    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)


class _Details(BaseModel):
    model_config = {"extra": "allow"}
    cached_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    reasoning_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)


class OpenAIUsage(BaseModel):
    model_config = {"extra": "allow"}
    prompt_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    completion_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    prompt_tokens_details: _Details | None = None
    completion_tokens_details: _Details | None = None
    cache_creation_input_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)  # litellm, for Anthropic


class AnthropicUsage(BaseModel):
    model_config = {"extra": "allow"}
    input_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    output_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    cache_read_input_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    cache_creation_input_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)


class AnthropicRequest(BaseModel):
    model: str | None = None
    system: str | list[dict[str, Any]] | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)


class AnthropicResponse(BaseModel):
    id: str = Field(min_length=1)
    type: str = "message"
    model: str | None = None
    content: list[dict[str, Any]] = Field(default_factory=list)
    stop_reason: str | None = None
    usage: AnthropicUsage | None = None


class AnthropicLine(_Common):
    model_config = {"extra": "forbid"}
    request: AnthropicRequest
    response: AnthropicResponse
    called_at: datetime


class OpenAIMessage(BaseModel):
    content: str | None = None


class OpenAIChoice(BaseModel):
    message: OpenAIMessage
    finish_reason: str | None = None


MAX_UNIX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a datetime holds


class OpenAIResponse(BaseModel):
    id: str = Field(min_length=1)
    created: int | float = Field(ge=0, le=MAX_UNIX_TIME, allow_inf_nan=False)  # 1e20 overflowed the sync
    model: str | None = None
    choices: list[OpenAIChoice] = Field(min_length=1)
    usage: OpenAIUsage | None = None


class OpenAILine(_Common):
    model_config = {"extra": "forbid"}
    request: OpenAIRequest
    response: OpenAIResponse
    called_at: datetime | None = None


def parse_line(raw: bytes, where: str) -> LogItem:
    """A LogItem from one JSON line (parsed and validated in one pass by pydantic).

    Raises ValidationError (bad JSON, wrong type, missing field) or ValueError.
    """
    if b'"response"' in raw:
        if _is_anthropic(raw):
            return _from_anthropic(AnthropicLine.model_validate_json(raw), where)
        return _from_openai(OpenAILine.model_validate_json(raw), where)
    return _fast_path(raw, where) or full_path(raw, where)


def full_path(raw: bytes, where: str) -> LogItem:
    """A trimloop-shape line through the full validator, which writes the error messages."""
    line = TrimloopLine.model_validate_json(raw)
    if line.inputs is None and line.messages is None:
        raise ValueError("inputs: required (or 'messages', the rendered chat, to match a template)")
    return LogItem(
        external_id=line.id or "sha256:" + hashlib.sha256(raw.strip()).hexdigest(),
        called_at=_utc(line.called_at), prompt=line.prompt, version=line.version,
        version_sha=line.version_sha, inputs=line.inputs, rendered=line.messages,
        output=line.output, model=line.model, input_tokens=line.input_tokens,
        output_tokens=line.output_tokens, cost=line.cost, latency_s=line.latency_s,
        feedback=_feedback(line.feedback), meta=line.meta, where=where,
        cached_input_tokens=line.cached_input_tokens, cache_write_tokens=line.cache_write_tokens,
        reasoning_tokens=line.reasoning_tokens, batch=line.batch,
        sample_rate=line.sample_rate,
    )


_FAST_KEYS = frozenset(("id", "prompt", "version", "inputs", "output", "model", "input_tokens",
                        "output_tokens", "cost", "latency_s", "called_at", "feedback", "meta", "sample_rate",
                        "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "batch"))
_FEEDBACK_KEYS = frozenset(("name", "value", "source"))


def _fast_path(raw: bytes, where: str) -> LogItem | None:
    """The common, well-formed trimloop line without pydantic (about 4x faster); None sends the
    line to the full validator, which also writes the error messages. Accepts a strict subset."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict or not _FAST_KEYS.issuperset(d):
        return None
    g = d.get
    ident, prompt, version, inputs, meta = g("id"), g("prompt"), g("version"), g("inputs"), g("meta", {})
    output, model, at, feedback = g("output"), g("model"), g("called_at"), g("feedback", [])
    tokens_in, tokens_out, cost, latency = g("input_tokens"), g("output_tokens"), g("cost"), g("latency_s")
    cached, written, reasoning, batch = g("cached_input_tokens"), g("cache_write_tokens"), g("reasoning_tokens"), g(
        "batch", False)
    rate = g("sample_rate")
    if not (type(ident) is str and ident and type(prompt) is str and prompt and type(inputs) is dict
            and type(at) is str and type(meta) is dict and type(feedback) is list
            and (version is None or type(version) is str) and (output is None or type(output) is str)
            and (model is None or type(model) is str) and _count(tokens_in) and _count(tokens_out)
            and _count(cached) and _count(written) and _count(reasoning) and type(batch) is bool
            and _amount(cost) and _amount(latency)
            and (rate is None or (type(rate) in (int, float) and 0 < rate <= 1))):
        return None
    for f in feedback:
        if not (type(f) is dict and _FEEDBACK_KEYS.issuperset(f) and type(f.get("name")) is str and f["name"]
                and type(f.get("source", "")) is str and "value" in f
                and (f["value"] is None or type(f["value"]) in (bool, int, float, str))):
            return None
    try:
        called_at = datetime.fromisoformat(at)
    except ValueError:
        return None
    return LogItem(
        external_id=ident, called_at=_utc(called_at), prompt=prompt, version=version, inputs=inputs,
        output=output, model=model, input_tokens=tokens_in, output_tokens=tokens_out, cost=cost,
        latency_s=latency, meta=meta, where=where, sample_rate=rate, cached_input_tokens=cached,
        cache_write_tokens=written, reasoning_tokens=reasoning, batch=batch,
        feedback=[{"name": f["name"], "value": f["value"], "source": f.get("source", "user")} for f in feedback],
        plain_text=b"\\u0000" not in raw,
    )


def _count(value: Any) -> bool:
    return value is None or (type(value) is int and 0 <= value <= MAX_TOKENS)


def _amount(value: Any) -> bool:
    return value is None or (type(value) in (int, float) and value >= 0)


def _from_openai(line: OpenAILine, where: str) -> LogItem:
    response, usage = line.response, line.response.usage or OpenAIUsage()
    choice = response.choices[0]
    meta = dict(line.meta)
    if choice.finish_reason:
        meta.setdefault("finish_reason", choice.finish_reason)
    called = line.called_at or datetime.fromtimestamp(response.created, tz=timezone.utc)
    return LogItem(
        external_id=response.id, called_at=_utc(called), prompt=line.prompt, version=line.version,
        version_sha=line.version_sha, inputs=line.inputs,
        rendered=[_flat_message(m) for m in line.request.messages], output=choice.message.content,
        model=response.model or line.request.model, cost=line.cost, latency_s=line.latency_s,
        feedback=_feedback(line.feedback), meta=meta, where=where, batch=line.batch, sample_rate=line.sample_rate,
    ).set_usage(usage_from(usage.model_dump(exclude_none=True)))


def _is_anthropic(raw: bytes) -> bool:
    """An Anthropic Message (`"type": "message"`, content blocks) rather than an OpenAI ChatCompletion."""
    try:
        response = orjson.loads(raw).get("response")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    return isinstance(response, dict) and (response.get("type") == "message" or (
        "choices" not in response and isinstance(response.get("content"), list)))


def _from_anthropic(line: AnthropicLine, where: str) -> LogItem:
    response, usage = line.response, line.response.usage or AnthropicUsage()
    meta = dict(line.meta)
    if response.stop_reason:
        meta.setdefault("finish_reason", response.stop_reason)
    system = line.request.system
    if isinstance(system, list):
        system = "".join(str(p.get("text", "")) for p in system if isinstance(p, dict))
    rendered = ([{"role": "system", "content": system}] if system else []) + [
        _flat_message(m) for m in line.request.messages]
    text = "".join(str(b.get("text", "")) for b in response.content if b.get("type") == "text")
    found = usage_from(usage.model_dump(exclude_none=True))
    if usage.cache_read_input_tokens is None and usage.cache_creation_input_tokens is None:
        found = TokenUsage(usage.input_tokens, usage.output_tokens)  # no cache keys: nothing to add
    return LogItem(
        external_id=response.id, called_at=_utc(line.called_at), prompt=line.prompt, version=line.version,
        version_sha=line.version_sha, inputs=line.inputs, rendered=rendered, output=text,
        model=response.model or line.request.model, cost=line.cost, latency_s=line.latency_s,
        feedback=_feedback(line.feedback), meta=meta, where=where, batch=line.batch, sample_rate=line.sample_rate,
    ).set_usage(found)


def _feedback(items: list[Feedback]) -> list[dict[str, Any]]:
    return [{"name": f["name"], "value": f["value"], "source": f.get("source", "user")} for f in items]


def _flat_message(message: dict[str, Any]) -> dict[str, Any]:
    """OpenAI content may be a list of parts; keep the text so it can match a template."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return {"role": message.get("role"), "content": content}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def classify(exc: ValidationError) -> str:
    """The report's reason code for a validation failure."""
    kinds = {e["type"] for e in exc.errors()}
    if "json_invalid" in kinds:
        return "invalid_json"
    if "missing" in kinds:
        return "missing_field"
    return "wrong_type"


def describe(exc: ValidationError | ValueError) -> str:
    """A one-line summary of what is wrong with a record."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors()[:3]:
            if err["type"] == "json_invalid":
                return f"invalid JSON: {err['ctx'].get('error', err['msg']) if err.get('ctx') else err['msg']}"
            if err["type"] == "model_type" and not err["loc"]:
                return f"a log line must be a JSON object, not {type(err['input']).__name__}"
            loc = ".".join(str(p) for p in err["loc"]) or "record"
            msg = "unknown field (put extra data under \"meta\")" if err["type"] == "extra_forbidden" else err["msg"]
            parts.append(f"{loc}: {msg}")
        return "; ".join(parts)
    return str(exc)
