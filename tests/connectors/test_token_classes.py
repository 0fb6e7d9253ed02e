"""Every connector maps the token classes (cached input, cache write, reasoning, batch) where its
source has them, into one convention: input counts the cache buckets, output counts reasoning.

The payloads are recorded shapes: OpenAI's ChatCompletion / Responses usage, Anthropic's Message
usage, Gemini's usageMetadata, OTel GenAI and OpenInference span attributes, Langfuse usageDetails
as its OpenAI and Anthropic integrations write them, and an autologged MLflow trace's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import log_line, make_store, write_logs
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.files_logs import parse_line
from trimloop.connectors.langfuse import LangfuseConnector
from trimloop.connectors.mlflow import _usage as mlflow_usage
from trimloop.connectors.otel import llm_fields
from trimloop.connectors.sync import sync_connector
from trimloop.core.usage import TokenUsage, usage_from, usage_from_details

OPENAI_CHAT = {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
               "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0,
                                             "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
OPENAI_RESPONSES = {"input_tokens": 2006, "input_tokens_details": {"cached_tokens": 1920}, "output_tokens": 300,
                    "output_tokens_details": {"reasoning_tokens": 192}, "total_tokens": 2306}
ANTHROPIC = {"input_tokens": 21, "cache_creation_input_tokens": 188086, "cache_read_input_tokens": 0,
             "output_tokens": 393, "service_tier": "standard"}
GEMINI = {"promptTokenCount": 2006, "cachedContentTokenCount": 1920, "candidatesTokenCount": 108,
          "thoughtsTokenCount": 192, "totalTokenCount": 2306}


@pytest.mark.parametrize(("payload", "expected"), [
    (OPENAI_CHAT, TokenUsage(2006, 300, cached=1920, reasoning=192)),
    (OPENAI_RESPONSES, TokenUsage(2006, 300, cached=1920, reasoning=192)),
    (ANTHROPIC, TokenUsage(21 + 188086, 393, cached=0, cache_write=188086)),
    (GEMINI, TokenUsage(2006, 300, cached=1920, reasoning=192)),
    # litellm's Usage for an Anthropic call: prompt_tokens already counts both buckets
    ({"prompt_tokens": 1300, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 1200},
      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1200}, TokenUsage(1300, 4, cached=1200, cache_write=0)),
    ({"input_tokens": 5, "output_tokens": 1}, TokenUsage(5, 1)),
])
def test_usage_shapes(payload: dict, expected: TokenUsage) -> None:
    assert usage_from(payload) == expected


def test_files_trimloop_shape_takes_the_classes() -> None:
    line = log_line(1, input_tokens=1300, cached_input_tokens=1024, cache_write_tokens=0, reasoning_tokens=7,
                    output_tokens=9, batch=True)
    item = parse_line(line.encode(), "calls.jsonl:1")
    assert (item.input_tokens, item.cached_input_tokens, item.cache_write_tokens) == (1300, 1024, 0)
    assert (item.output_tokens, item.reasoning_tokens, item.batch) == (9, 7, True)


def test_files_openai_shape_reads_usage_details() -> None:
    line = {"request": {"model": "o3", "messages": [{"role": "user", "content": "hi"}]},
            "response": {"id": "chatcmpl-1", "created": 1748779200, "model": "o3-2025-04-16",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                      "finish_reason": "stop"}], "usage": OPENAI_CHAT},
            "batch": True}
    item = parse_line(json.dumps(line).encode(), "calls.jsonl:1")
    assert (item.input_tokens, item.cached_input_tokens, item.output_tokens, item.reasoning_tokens) == (
        2006, 1920, 300, 192)
    assert item.batch


def test_files_anthropic_shape_adds_the_cache_buckets_to_input() -> None:
    line = {"request": {"model": "claude-sonnet-4-5", "max_tokens": 1024,
                        "system": [{"type": "text", "text": "You sort tickets.", "cache_control": {"type": "ephemeral"}}],
                        "messages": [{"role": "user", "content": "Ticket: refund please"}]},
            "response": {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                         "content": [{"type": "text", "text": "billing"}], "stop_reason": "end_turn",
                         "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0,
                                   "cache_read_input_tokens": 1500, "output_tokens": 3}},
            "called_at": "2025-06-01T12:00:00Z", "prompt": "triage"}
    item = parse_line(json.dumps(line).encode(), "calls.jsonl:1")
    assert item.output == "billing" and item.model == "claude-sonnet-4-5-20250929"
    assert item.rendered == [{"role": "system", "content": "You sort tickets."},
                             {"role": "user", "content": "Ticket: refund please"}]
    assert (item.input_tokens, item.cached_input_tokens, item.cache_write_tokens, item.output_tokens) == (
        1512, 1500, 0, 3)
    assert item.meta["finish_reason"] == "end_turn"


def test_otel_genai_attributes() -> None:
    fields = llm_fields({"gen_ai.usage.input_tokens": 811, "gen_ai.usage.output_tokens": 92,
                         "gen_ai.usage.cache_read.input_tokens": 640, "gen_ai.usage.cache_creation.input_tokens": 0,
                         "gen_ai.usage.reasoning.output_tokens": 50})
    assert (fields["input_tokens"], fields["cached_input_tokens"], fields["cache_write_tokens"],
            fields["output_tokens"], fields["reasoning_tokens"]) == (811, 640, 0, 92, 50)


def test_openinference_attributes() -> None:  # what Phoenix stores, from openinference instrumentations
    fields = llm_fields({"llm.token_count.prompt": 1000, "llm.token_count.completion": 500,
                         "llm.token_count.prompt_details.cache_read": 700,
                         "llm.token_count.prompt_details.cache_write": 100,
                         "llm.token_count.completion_details.reasoning": 200})
    assert (fields["input_tokens"], fields["cached_input_tokens"], fields["cache_write_tokens"],
            fields["output_tokens"], fields["reasoning_tokens"]) == (1000, 700, 100, 500, 200)


@pytest.mark.parametrize(("details", "expected"), [
    # Langfuse's OpenAI integration: details split out of input/output (disjoint buckets)
    ({"input": 86, "input_cached_tokens": 1920, "output": 108, "output_reasoning_tokens": 192, "total": 2306},
     TokenUsage(2006, 300, cached=1920, cache_write=None, reasoning=192)),
    # Anthropic through Langfuse: the provider's own keys
    ({"input": 21, "cache_read_input_tokens": 1500, "cache_creation_input_tokens": 300, "output": 9},
     TokenUsage(1821, 9, cached=1500, cache_write=300)),
    ({"input": 31, "output": 1, "total": 32}, TokenUsage(31, 1)),
])
def test_langfuse_usage_details(details: dict, expected: TokenUsage) -> None:
    assert usage_from_details(details) == expected


def test_langfuse_observation_maps_the_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
    connector = LangfuseConnector(name="lf", options={"url": "http://127.0.0.1:9"})
    item = connector._log_item({"id": "obs-1", "traceId": "t-1", "startTime": "2025-06-01T12:00:00Z",
                                "endTime": "2025-06-01T12:00:01Z", "providedModelName": "gpt-4.1-mini",
                                "input": [{"role": "user", "content": "hi"}], "output": {"content": "hello"},
                                "usageDetails": {"input": 86, "input_cached_tokens": 1920, "output": 108,
                                                 "output_reasoning_tokens": 192, "total": 2306},
                                "totalCost": 0.0004}, {})
    connector.close()
    assert (item.input_tokens, item.cached_input_tokens, item.output_tokens, item.reasoning_tokens) == (
        2006, 1920, 300, 192)


def test_mlflow_trace_usage_is_completed_by_the_autologged_response() -> None:
    trace_usage = {"input_tokens": 2006, "output_tokens": 300, "total_tokens": 2306}
    outputs = {"id": "chatcmpl-1", "object": "chat.completion", "usage": OPENAI_CHAT}
    assert mlflow_usage(trace_usage, outputs) == TokenUsage(2006, 300, cached=1920, reasoning=192)
    anthropic = {"id": "msg_01", "type": "message", "usage": {"input_tokens": 12, "cache_read_input_tokens": 1500,
                                                               "cache_creation_input_tokens": 0, "output_tokens": 3}}
    assert mlflow_usage({"input_tokens": 12, "output_tokens": 3}, anthropic) == TokenUsage(
        1512, 3, cached=1500, cache_write=0)
    assert mlflow_usage(trace_usage, None) == TokenUsage(2006, 300)


@pytest.mark.db
def test_sync_stores_the_classes(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl", [
        log_line(1, input_tokens=1300, cached_input_tokens=1024, reasoning_tokens=3, output_tokens=5, batch=True),
        log_line(2)])
    report = sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(root)}))
    assert report.logs_added == 2
    with engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(text(
            "select external_id, input_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, batch "
            "from logrecord order by external_id"))]
    assert [(e, i, c, w, r, bool(b)) for e, i, c, w, r, b in stored] == [
        ("call-1", 1300, 1024, None, 3, True), ("call-2", 20, None, None, None, False)]
