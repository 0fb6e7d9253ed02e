"""The otel connector: spans from real instrumentation libraries, both semantic conventions, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import make_store, stored_json
from tests.connectors.servers import free_port, running
from trimloop.connectors.base import LogItem, Looked, Problem
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.otel import OtelConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core.errors import UserError
from trimloop.core.templates import Template

HERE = Path(__file__).parent


@pytest.fixture
def fake_openai(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with running([sys.executable, "-m", "trimloop.testing.fake_openai", "--port", str(port)],
                 health=f"http://127.0.0.1:{port}/v1/models", env={}, log=tmp_path / "fake.log", timeout_s=30):
        yield f"http://127.0.0.1:{port}/v1"


def span(span_id: str, attrs: dict, parent: str = "") -> dict:
    def value(v: object) -> dict:
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        return {"doubleValue": v} if isinstance(v, float) else {"stringValue": v}
    return {"traceId": "0" * 31 + "1", "spanId": span_id, "parentSpanId": parent, "name": "chat",
            "startTimeUnixNano": "1717243200000000000", "endTimeUnixNano": "1717243200500000000",
            "attributes": [{"key": k, "value": value(v)} for k, v in attrs.items()]}


def export(*spans: dict) -> str:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]})


@pytest.mark.integration
def test_spans_from_real_instrumentations_sync_and_link(fake_openai: str, tmp_path: Path, engine: Engine) -> None:
    import openinference.instrumentation.openai  # noqa: F401  (the dev extra; fails, never skips, if absent)
    import opentelemetry.instrumentation.openai_v2  # noqa: F401
    spans = tmp_path / "spans"
    spans.mkdir()
    subprocess.run([sys.executable, str(HERE / "otel_produce.py"), str(spans), fake_openai],
                   check=True, timeout=120, capture_output=True)
    store = make_store(tmp_path / "store")
    assert sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(store)})).fatal is None
    otel = OtelConnector(name="otel", options={"path": str(spans)})
    report = sync_connector(engine=engine, connector=otel)
    assert report.fatal is None and report.skipped_total == 0 and report.logs_added == 4, report.to_dict()
    with engine.connect() as conn:
        rows = conn.execute(text("select l.inputs, l.model, l.input_tokens, l.output_tokens, l.latency_s, "
                                 "v.external_version, l.output from logrecord l join promptversion v "
                                 "on v.id = l.version_id order by l.external_id")).all()
    assert sorted(stored_json(r[0])["ticket"] for r in rows) == sorted(["I was charged twice", "The app crashes on start"] * 2)
    assert all(r[1] == "gpt-4o-mini" and r[2] > 0 and r[3] == 4 and r[4] > 0 and r[5] == "1" for r in rows)
    assert sum(1 for r in rows if r[6] and r[6].startswith("echo: Ticket:")) == 2  # OpenInference keeps output
    assert [str(x) for x in report.looked] == [f"{spans.resolve()} (2 span files): 4 read"] and report.notices == []
    assert sync_connector(engine=engine, connector=otel).logs_added == 0


@pytest.mark.integration
def test_real_instrumentations_carry_cached_and_reasoning_tokens(tmp_path: Path) -> None:
    """OpenInference's OpenAI instrumentation records the usage details of a provider that caches
    (the fake server billing like OpenAI): the shared system prompt, sent first by the GenAI-instrumented
    run, is read from the cache."""
    import openinference.instrumentation.openai  # noqa: F401
    port = free_port()
    spans = tmp_path / "spans"
    spans.mkdir()
    with running([sys.executable, "-m", "trimloop.testing.fake_openai", "--port", str(port), "--prompt-cache",
                  "openai", "--reasoning-tokens", "3"], health=f"http://127.0.0.1:{port}/v1/models",
                 env={"PYTHONPATH": str(HERE.parent.parent)},  # this checkout's fake server
                 log=tmp_path / "fake.log", timeout_s=30):
        subprocess.run([sys.executable, str(HERE / "otel_produce.py"), str(spans), f"http://127.0.0.1:{port}/v1"],
                       check=True, timeout=120, capture_output=True, env={**os.environ, "PRODUCE_LONG_SYSTEM": "1"})
    only = tmp_path / "openinference"
    only.mkdir()
    (spans / "openinference.json").rename(only / "openinference.json")  # the GenAI instrumentation records no details
    otel = OtelConnector(name="otel", options={"path": str(only)})
    items = sorted((i for i in otel.read_logs(cursor=None) if isinstance(i, LogItem)), key=lambda i: i.called_at)
    assert len(items) == 2
    for item in items:
        assert item.cached_input_tokens >= 1024 and item.cached_input_tokens % 128 == 0
        assert item.cached_input_tokens < item.input_tokens  # the ticket after the system prompt is not cached
        assert item.reasoning_tokens == 3 and item.output_tokens == 4 + 3


def test_a_folder_with_no_span_files_or_no_llm_spans_says_so(tmp_path: Path) -> None:
    def notice(path: Path) -> Any:
        [looked] = [i for i in OtelConnector(name="o", options={"path": str(path)}).read_logs(cursor=None)
                    if isinstance(i, Looked)]
        return looked.notice

    empty = notice(tmp_path)
    assert empty.reason == "no_span_files" and empty.where == f"[connectors.o] path {tmp_path.resolve()}"
    assert "OTLP JSON file exporter" in (empty.hint or "")
    (tmp_path / "app.jsonl").write_text(export(span("c" * 16, {"trimloop.prompt": "greet"})) + "\n", encoding="utf-8")
    app_only = notice(tmp_path)
    assert app_only.message == "its 1 file(s) hold no LLM spans" and "instrument the model client" in app_only.hint


def test_old_and_new_gen_ai_names_and_openinference(tmp_path: Path) -> None:
    old = span("a" * 16, {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                          "gen_ai.usage.prompt_tokens": 12, "gen_ai.usage.completion_tokens": 3,
                          "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Hi Ann",
                          "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Hello"})
    new = span("b" * 16, {"gen_ai.operation.name": "chat", "gen_ai.response.model": "m2",
                          "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 2,
                          "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi Bo"}]}]),
                          "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Yo"}]}])},
               parent="c" * 16)
    app = span("c" * 16, {"trimloop.prompt": "greet", "trimloop.inputs": '{"name": "Bo"}'})
    oi = span("d" * 16, {"openinference.span.kind": "LLM", "llm.model_name": "m3", "llm.token_count.prompt": 5,
                         "llm.token_count.completion": 1, "llm.prompt_template.variables": '{"name": "Cy"}',
                         "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "Hi Cy",
                         "llm.output_messages.0.message.content": "Hey", "llm.cost.total": 0.001})
    (tmp_path / "spans.jsonl").write_text(export(old, new, app, oi) + "\n", encoding="utf-8")
    items = {i.external_id[-16:]: i for i in OtelConnector(name="o", options={"path": str(tmp_path)}).read_logs(cursor=None)
             if isinstance(i, LogItem)}
    assert set(items) == {"a" * 16, "b" * 16, "d" * 16}  # the app span is not an LLM call
    a, b, d = items["a" * 16], items["b" * 16], items["d" * 16]
    assert (a.model, a.input_tokens, a.output_tokens, a.output, a.rendered) == (
        "gpt-4o-mini", 12, 3, "Hello", [{"role": "user", "content": "Hi Ann"}])
    assert (b.model, b.input_tokens, b.output, b.prompt, b.inputs) == ("m2", 7, "Yo", "greet", {"name": "Bo"})
    assert (d.model, d.input_tokens, d.output, d.inputs, d.cost) == ("m3", 5, "Hey", {"name": "Cy"}, 0.001)
    assert a.latency_s == 0.5 and a.called_at.year == 2024



def test_a_span_time_past_year_9999_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """`startTimeUnixNano` of 10^30 raised OverflowError out of the connector, ending the sync."""
    named = {"gen_ai.request.model": "m", "gen_ai.system": "openai", "trimloop.prompt": "triage"}
    ok = span("a" * 16, named)
    late = {**span("b" * 16, named),
            "startTimeUnixNano": "1" + "0" * 30}
    (tmp_path / "spans.jsonl").write_text(export(ok, late) + "\n", encoding="utf-8")
    items = list(OtelConnector(name="o", options={"path": str(tmp_path)}).read_logs(cursor=None))
    assert [i.external_id[-16:] for i in items if isinstance(i, LogItem)] == ["a" * 16]
    [problem] = [i for i in items if isinstance(i, Problem)]
    assert problem.reason == "bad_span" and problem.where.endswith("span " + "b" * 16)

def test_bad_files_are_reported_with_file_and_line(tmp_path: Path, engine: Engine) -> None:
    good = span("a" * 16, {"gen_ai.system": "openai", "gen_ai.prompt.0.role": "user",
                           "gen_ai.prompt.0.content": "Ticket: x", "trimloop.prompt": "triage",
                           "trimloop.inputs": '{"ticket": "x"}'})
    (tmp_path / "s.jsonl").write_bytes(b"{oops\n" + export(good).encode() + b"\n[1]\n\xff\n")
    store = make_store(tmp_path / "store")
    sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(store)}))
    (tmp_path / "store" / "s.jsonl").unlink(missing_ok=True)
    report = sync_connector(engine=engine, connector=OtelConnector(name="o", options={"path": str(tmp_path / "s.jsonl")}))
    assert report.logs_added == 1
    assert report.skipped == {"invalid_json": 1, "wrong_type": 1, "not_utf8": 1}
    assert [p.where for p in report.problems] == ["s.jsonl:1", "s.jsonl:3", "s.jsonl:4"]


def test_write_back_is_refused_clearly(tmp_path: Path) -> None:
    otel = OtelConnector(name="traces", options={"path": str(tmp_path)})
    with pytest.raises(UserError, match="otel connector is read-only") as info:
        otel.write_version(prompt="p", template=Template.plain("x"), model="m", params={}, label="staging")
    assert "connector that holds the prompt" in (info.value.hint or "")
