"""The phoenix connector with a fake Phoenix (httpx.MockTransport): Phoenix's rules, bad input."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from trimloop.connectors.base import Checkpoint, LogItem, Looked, Problem, PromptItem
from trimloop.connectors.phoenix import PhoenixConnector
from trimloop.core.egress import Egress
from trimloop.core.errors import ConnectorError, UserError
from trimloop.core.templates import Template

URL = "http://phoenix.test"


def version(vid: str, template: dict[str, Any], fmt: str = "MUSTACHE", provider: str = "OPENAI") -> dict[str, Any]:
    return {"id": vid, "model_provider": provider, "model_name": "m", "template": template, "template_type": "CHAT",
            "template_format": fmt, "invocation_parameters": {"type": "openai", "openai": {"temperature": 0.1}}}


VERSIONS = [
    version("VjE=", {"type": "chat", "messages": [{"role": "developer", "content": [{"type": "text", "text": "Hi {{x}}"}]}]}),
    version("VjI=", {"type": "string", "template": "Hi {{x}}"}),
    version("VjM=", {"type": "chat", "messages": [{"role": "user", "content": "Hi {x}"}]}, fmt="F_STRING"),
    version("VjQ=", {"type": "chat", "messages": [{"role": "tool", "content": "x"}]}),
    version("VjU=", {"type": "chat", "messages": [{"role": "user", "content": "Hi {{x}}"}]}, provider="ANTHROPIC"),
]


def fake(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/v1/prompts":
        return httpx.Response(200, json={"data": [{"id": "UDox", "name": "greet"}], "next_cursor": None})
    if path == "/v1/prompts/greet/versions":
        return httpx.Response(200, json={"data": VERSIONS, "next_cursor": None})
    if path.endswith("/tags"):
        tags = [{"id": "t", "name": "production"}] if "VjE=" in path else []
        return httpx.Response(200, json={"data": tags, "next_cursor": None})
    return httpx.Response(404, json={"detail": "not found"})


def make(handler: Any = fake) -> PhoenixConnector:
    return PhoenixConnector(name="px", options={"url": URL}, transport=httpx.MockTransport(handler),
                            egress=Egress.parse(["phoenix.test"]))


def test_versions_keep_opaque_ids_and_refuse_what_trimloop_cannot_hold() -> None:
    items = list(make().read_prompts())
    good = {i.external_version: i for i in items if isinstance(i, PromptItem)}
    bad = {i.where.rsplit(" ", 1)[-1]: i for i in items if isinstance(i, Problem)}
    assert set(good) == {"VjE=", "VjU="}
    assert good["VjE="].template == Template.chat(("system", "Hi {{x}}")) and good["VjE="].labels == ["production"]
    assert good["VjE="].params == {"temperature": 0.1} and good["VjU="].model == "anthropic/m"
    assert "string templates" in bad["VjI="].message and "f-string" in bad["VjM="].message
    assert "role 'tool'" in bad["VjQ="].message


@pytest.mark.parametrize(("prompt", "label", "template", "words"), [
    ("Greet", "staging", Template.chat(("user", "x")), "prompt name 'Greet'"),
    ("greet", "Staging", Template.chat(("user", "x")), "label 'Staging'"),
    ("greet", "staging", Template.plain("x"), "chat templates"),
])
def test_write_back_refuses_what_phoenix_refuses(prompt: str, label: str, template: Template, words: str) -> None:
    with pytest.raises(UserError, match=words):
        make().write_version(prompt=prompt, template=template, model="m", params={}, label=label)


def test_garbage_answer_is_a_connector_error() -> None:
    with pytest.raises(ConnectorError, match="without a 'data' list"):
        list(make(lambda r: httpx.Response(200, json={"items": []})).read_prompts())


def span(sid: str, start: str) -> dict[str, Any]:
    return {"context": {"span_id": sid, "trace_id": "t"}, "start_time": start, "end_time": start,
            "attributes": {"llm.model_name": "m"}}


@pytest.mark.parametrize("options", [{}, {"project": "default"}])
def test_a_cursor_saved_before_cursors_were_per_project_resumes_there(options: dict[str, Any]) -> None:
    """Before, one {ts, ids} covered the configured project (default "default"): it still resumes."""
    spans = {"default": [span("a", "2025-01-01T00:00:00+00:00"), span("b", "2025-01-01T00:00:05+00:00")],
             "support-bot": [span("c", "2024-01-01T00:00:00+00:00")]}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/projects":
            return httpx.Response(200, json={"data": [{"id": "1", "name": "default"}, {"id": "2", "name": "support-bot"}]})
        project = path.split("/")[3]
        if path.endswith("/spans"):
            return httpx.Response(200, json={"data": spans[project], "next_cursor": None})
        return httpx.Response(200, json={"data": [], "next_cursor": None})  # annotations

    connector = PhoenixConnector(name="px", options={"url": URL, **options},
                                 transport=httpx.MockTransport(handler), egress=Egress.parse(["phoenix.test"]))
    old = json.dumps({"ts": "2025-01-01T00:00:00+00:00", "ids": ["a"]})
    with connector:
        out = list(connector.read_logs(cursor=old))
    read = [i.external_id for i in out if isinstance(i, LogItem)]
    assert read == (["b", "c"] if not options else ["b"])  # support-bot was never read: from its start
    cursor = json.loads([i for i in out if isinstance(i, Checkpoint)][-1].cursor)
    assert cursor["projects"]["default"] == {"ts": "2025-01-01T00:00:05+00:00", "ids": ["b"]}
    assert [str(i) for i in out if isinstance(i, Looked)][0] == "project 'default': 1 read"
