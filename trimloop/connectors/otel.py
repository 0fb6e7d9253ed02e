"""The otel connector (read-only): LLM spans from OTLP JSON files, in the OpenTelemetry GenAI
semantic conventions (`gen_ai.*`, old and new attribute names) and OpenInference (`llm.*`).

    <path>/**/*.jsonl   one ExportTraceServiceRequest per line (the collector's file exporter)
    <path>/**/*.json    one ExportTraceServiceRequest per file (may be pretty-printed)

A span is an LLM call when it has `gen_ai.operation.name`/`gen_ai.system` or OpenInference kind
LLM. It names its prompt with `trimloop.prompt`, `trimloop.prompt.version` and `trimloop.inputs`
(JSON) on itself or an ancestor span, or OpenInference's `llm.prompt_template.*`; otherwise sync
matches its input messages against the known templates.

A span sampled by an OpenTelemetry probability sampler carries its threshold in its trace state
(`ot=th:…`, the spec's "TraceState: Probability Sampling"): its sampling probability becomes the
log's `sample_rate`, so each such span counts as 1 / probability calls.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from trimloop.connectors.base import Checkpoint, Connector, LogItem, Looked, Problem, PromptItem
from trimloop.connectors.otlp import attributes, maybe_json
from trimloop.core.errors import ConfigError

INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion")
MODEL = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
COST = ("gen_ai.usage.cost", "llm.cost.total")
# token classes: OTel GenAI semconv (input_tokens includes both cache buckets), Traceloop's older
# spellings, OpenInference's details (llm.token_count.prompt includes them too)
CACHE_READ_TOKENS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                     "llm.token_count.prompt_details.cache_read")
CACHE_WRITE_TOKENS = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens",
                      "llm.token_count.prompt_details.cache_write")
REASONING_TOKENS = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
                    "llm.token_count.completion_details.reasoning")
PARAMS = ("temperature", "max_tokens", "top_p", "frequency_penalty", "presence_penalty", "seed")


class OtelConnector(Connector):
    """Read-only: it has no prompt store, so write-back raises a clear error."""

    type = "otel"
    read_only = True

    class Options(BaseModel):
        model_config = {"extra": "forbid"}
        path: Path

    def read_prompts(self) -> Iterator[PromptItem | Problem]:
        return iter(())

    def read_logs(self, *, cursor: str | None) -> Iterator[LogItem | Problem | Checkpoint | Looked]:
        """LLM spans from every .json/.jsonl file under `path`; then where it looked (files found,
        spans read), with a notice when the folder never gave a span."""
        root = self.options.path.expanduser().resolve()
        if not root.exists():
            raise ConfigError(f"{root} does not exist", where=f"[connectors.{self.name}] path",
                              hint="point path at the folder your OTLP file exporter writes to")
        state: dict[str, list[int]] = json.loads(cursor)["files"] if cursor else {}
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in (".json", ".jsonl"))
        first, read = not state, 0
        for path in files:
            rel = str(path.relative_to(root.parent if root.is_file() else root))
            if path.is_symlink() or not path.resolve().is_relative_to(root if root.is_dir() else root.parent):
                yield Problem(rel, "file leaves the connector folder (symlink)", "outside_folder")
                continue
            for item in self._read_file(path, rel, state):
                read += isinstance(item, LogItem)
                yield item
            yield Checkpoint(json.dumps({"files": state}, sort_keys=True))
        yield Checkpoint(json.dumps({"files": state}, sort_keys=True))
        looked = Looked(f"{root} ({len(files)} span file{'s' if len(files) != 1 else ''})", read)
        where = f"[connectors.{self.name}] path {root}"
        if not files:
            looked.notice = Problem(where, "holds no .json or .jsonl files", "no_span_files",
                                    "point path at the folder your OTLP JSON file exporter writes to")
        elif first and not read:
            looked.notice = Problem(where, f"its {len(files)} file(s) hold no LLM spans", "no_llm_spans",
                                    "trimloop reads spans with gen_ai.* (OpenTelemetry GenAI) or OpenInference "
                                    "LLM attributes: instrument the model client, not only the app")
        yield looked

    def _read_file(self, path: Path, rel: str, state: dict[str, list[int]]) -> Iterator[LogItem | Problem]:
        offset, lineno = state.get(rel, [0, 0])
        size = path.stat().st_size
        if size < offset:
            offset, lineno = 0, 0
        if path.suffix == ".json":  # one document per file, read again only if it changed
            if offset != size:
                yield from self._document(path.read_bytes(), f"{rel}:1")
            state[rel] = [size, 1]
            return
        with path.open("rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # still being written
                lineno += 1
                offset += len(raw)
                if raw.strip():
                    yield from self._document(raw, f"{rel}:{lineno}")
        state[rel] = [offset, lineno]

    def _document(self, raw: bytes, where: str) -> Iterator[LogItem | Problem]:
        try:
            data = json.loads(raw)
        except UnicodeDecodeError:
            yield Problem(where, "not UTF-8", "not_utf8", "OTLP JSON files are UTF-8")
            return
        except ValueError as exc:
            yield Problem(where, f"invalid JSON: {exc}", "invalid_json", "one OTLP JSON export per line")
            return
        if not isinstance(data, dict) or not isinstance(data.get("resourceSpans", data.get("resource_spans")), list):
            yield Problem(where, "not an OTLP trace export (no resourceSpans list)", "wrong_type",
                          "export spans with the OTLP JSON file exporter")
            return
        yield from export_items(data, where)


def export_items(data: dict[str, Any], where: str) -> Iterator[LogItem | Problem]:
    """The LLM calls in one ExportTraceServiceRequest (OTLP/JSON, or protobuf as a dict): what the
    files read here and what `POST /v1/traces` receives go through this one mapping."""
    spans = [s for rs in data.get("resourceSpans") or data.get("resource_spans") or [] if isinstance(rs, dict)
             for ss in rs.get("scopeSpans") or rs.get("scope_spans") or [] if isinstance(ss, dict)
             for s in ss.get("spans") or []]
    by_id = {_hex(s.get("spanId") or s.get("span_id")): s for s in spans if isinstance(s, dict)}
    for span in by_id.values():
        attrs = attributes(span.get("attributes"))
        if _is_llm(attrs):
            try:
                item = _item(span, attrs, by_id, where)
                yield _unnamed(span, item, by_id) or item
            except (ValueError, TypeError, KeyError, OverflowError) as exc:
                yield Problem(f"{where} span {_hex(span.get('spanId') or span.get('span_id'))}",
                              f"unreadable span: {exc}", "bad_span")


def _unnamed(span: dict[str, Any], item: LogItem, by_id: dict[str, Any]) -> Problem | None:
    """The Problem of an LLM span that names no prompt (no trimloop.prompt on it or an ancestor in
    this export) and records no messages to match: nothing can tell which prompt it was. Its
    parent's absence from the export is the usual cause: an SDK's BatchSpanProcessor exports a
    span when it ends, so a call's span can leave in an earlier export than the span around it."""
    if item.prompt is not None or item.rendered is not None or item.version_sha:
        return None
    parent = _hex(span.get("parentSpanId") or span.get("parent_span_id") or "")
    copy = ("copy trimloop.* onto each span when it starts (the TrimloopAttributes span processor in "
            "docs/connectors.md)")
    if parent and parent not in by_id:
        return Problem(item.where or item.external_id,
                       f"LLM span names no prompt and records no messages; its parent span {parent} was not in "
                       "this export, and trimloop.* attributes are read from the span's ancestors in the same "
                       "export only", "missing_field",
                       f"{copy}, or record message content (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true) "
                       "so the messages are matched to the prompt")
    return Problem(item.where or item.external_id,
                   "LLM span names no prompt and records no messages to match against the prompts",
                   "missing_field", "set trimloop.prompt (and trimloop.prompt.version, trimloop.inputs) on the "
                   f"span or a span around the call and {copy}, or record message content")


def _item(span: dict[str, Any], attrs: dict[str, Any], by_id: dict[str, Any], where: str) -> LogItem:
    trace_id, span_id = _hex(span.get("traceId") or span.get("trace_id")), _hex(span.get("spanId") or span.get("span_id"))
    start = int(span.get("startTimeUnixNano") or span.get("start_time_unix_nano"))
    end = int(span.get("endTimeUnixNano") or span.get("end_time_unix_nano") or start)
    link = _inherited(span, attrs, by_id)
    inputs = maybe_json(link.get("trimloop.inputs") or attrs.get("llm.prompt_template.variables"))
    return LogItem(
        external_id=f"{trace_id}:{span_id}",
        called_at=datetime.fromtimestamp(start / 1e9, tz=timezone.utc),
        prompt=link.get("trimloop.prompt"),
        version=_text(link.get("trimloop.prompt.version") or attrs.get("llm.prompt_template.version")),
        inputs=inputs if isinstance(inputs, dict) else None,
        latency_s=(end - start) / 1e9, **llm_fields(attrs),
        meta={"span_name": span.get("name"), **_params(attrs)},  # trace and span ids: in external_id
        where=f"{where} span {span_id}",
        sample_rate=sampling_probability(span.get("traceState") or span.get("trace_state")),
    )


MAX_THRESHOLD = 2**56  # thresholds are 56-bit: 14 hex digits


def sampling_probability(trace_state: Any) -> float | None:
    """The sampling probability in a W3C trace state's OpenTelemetry entry: `ot=th:T` with T the
    rejection threshold, up to 14 hex digits with trailing zeros left out (`th:0` keeps every
    span, `th:8` half, `th:fd70a4` about 1 %); probability = (2^56 − T) / 2^56. None when the
    trace state has no threshold, or an unreadable one (the span then counts once)."""
    if not isinstance(trace_state, str):
        return None
    for member in trace_state.split(","):
        key, _, value = member.strip().partition("=")
        if key != "ot":
            continue
        for field in value.split(";"):
            name, _, th = field.partition(":")
            if name != "th" or not 1 <= len(th) <= 14:
                continue
            try:
                threshold = int(th.ljust(14, "0"), 16)
            except ValueError:
                return None
            return (MAX_THRESHOLD - threshold) / MAX_THRESHOLD if threshold < MAX_THRESHOLD else None
    return None


def llm_fields(attrs: dict[str, Any]) -> dict[str, Any]:
    """LogItem fields from flat span attributes in either convention (also used by phoenix)."""
    return {"rendered": _input_messages(attrs), "output": _output(attrs), "model": _first(attrs, MODEL),
            "input_tokens": _int(_first(attrs, INPUT_TOKENS)), "output_tokens": _int(_first(attrs, OUTPUT_TOKENS)),
            "cached_input_tokens": _int(_first(attrs, CACHE_READ_TOKENS)),
            "cache_write_tokens": _int(_first(attrs, CACHE_WRITE_TOKENS)),
            "reasoning_tokens": _int(_first(attrs, REASONING_TOKENS)), "cost": _first(attrs, COST)}


def params_meta(attrs: dict[str, Any]) -> dict[str, Any]:
    """Request parameters worth keeping in a LogRecord's meta."""
    return _params(attrs)


def _is_llm(attrs: dict[str, Any]) -> bool:
    return ("gen_ai.operation.name" in attrs or "gen_ai.system" in attrs or "gen_ai.provider.name" in attrs
            or attrs.get("openinference.span.kind") == "LLM")


def _inherited(span: dict[str, Any], attrs: dict[str, Any], by_id: dict[str, Any]) -> dict[str, Any]:
    """trimloop.* attributes from the span or its nearest ancestor that has them."""
    current, seen = attrs, set()
    while True:
        found = {k: v for k, v in current.items() if k.startswith("trimloop.")}
        if found:
            return found
        parent = _hex(span.get("parentSpanId") or span.get("parent_span_id") or "")
        if not parent or parent in seen or parent not in by_id:
            return {}
        seen.add(parent)
        span = by_id[parent]
        current = attributes(span.get("attributes"))


def _input_messages(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    new = maybe_json(attrs.get("gen_ai.input.messages"))
    if isinstance(new, list):  # current semconv: [{role, parts: [{type: text, content}]}]
        return [{"role": m.get("role"), "content": "".join(p.get("content", "") for p in m.get("parts", [])
                                                             if p.get("type") == "text")} for m in new]
    for prefix, role, content in (("gen_ai.prompt.", "role", "content"),
                                  ("llm.input_messages.", "message.role", "message.content")):
        messages = _indexed(attrs, prefix, role, content)
        if messages:
            return messages
    return None


def _output(attrs: dict[str, Any]) -> str | None:
    new = maybe_json(attrs.get("gen_ai.output.messages"))
    if isinstance(new, list) and new:
        return "".join(p.get("content", "") for p in new[0].get("parts", []) if p.get("type") == "text")
    for prefix, role, content in (("gen_ai.completion.", "role", "content"),
                                  ("llm.output_messages.", "message.role", "message.content")):
        messages = _indexed(attrs, prefix, role, content)
        if messages:
            return messages[0]["content"]
    return None


def _indexed(attrs: dict[str, Any], prefix: str, role: str, content: str) -> list[dict[str, Any]]:
    out, i = [], 0
    while f"{prefix}{i}.{role}" in attrs or f"{prefix}{i}.{content}" in attrs:
        out.append({"role": attrs.get(f"{prefix}{i}.{role}"), "content": attrs.get(f"{prefix}{i}.{content}")})
        i += 1
    return out


def _params(attrs: dict[str, Any]) -> dict[str, Any]:
    params = {p: attrs[f"gen_ai.request.{p}"] for p in PARAMS if f"gen_ai.request.{p}" in attrs}
    invocation = maybe_json(attrs.get("llm.invocation_parameters"))
    if isinstance(invocation, dict):
        params.update({k: v for k, v in invocation.items() if k in PARAMS})
    return {"params": params} if params else {}


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:  # a loop, not next(generator): this runs seven times for every span
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


_HEX_ID = re.compile(r"[0-9a-fA-F]{16}(?:[0-9a-fA-F]{16})?")


def _hex(value: Any) -> str:
    """Span and trace ids: hex in OTLP/JSON, base64 in protobuf's JSON mapping; hex either way."""
    text = str(value or "")
    if _HEX_ID.fullmatch(text):
        return text.lower()
    try:
        return base64.b64decode(text, validate=True).hex()
    except ValueError:
        return text
