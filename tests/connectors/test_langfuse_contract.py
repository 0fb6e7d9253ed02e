"""The langfuse connector, contract-tested: every request it sends and every response the stub
sends back is validated against Langfuse's OpenAPI spec (tests/connectors/data). Not a live server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.langfuse_stub import LangfuseStub
from trimloop.connectors.langfuse import LangfuseConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core.errors import ConfigError, ConnectorError
from trimloop.core.templates import Template

SYSTEM = "You sort support tickets into billing, bug or other."


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[LangfuseStub]:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
    with LangfuseStub() as server:
        chat = [{"type": "chatmessage", "role": "system", "content": SYSTEM},
                {"type": "chatmessage", "role": "user", "content": "Ticket: {{ticket}}"}]
        server.add_prompt("triage", "chat", chat, {"model": "gpt-4o-mini", "temperature": 0}, ["production"])
        server.add_prompt("triage", "chat", chat[:1] + [{"type": "placeholder", "name": "history"}], {"model": "m"}, [])
        server.add_prompt("qa", "text", "Q: {{question}}\nA:", {"max_tokens": 8}, ["production"])
        for i, ticket in enumerate(["I was charged twice", "The app crashes on start"]):
            server.observations.append({
                "id": f"obs-{i}", "traceId": f"trace-{i}", "type": "GENERATION", "name": "triage",
                "startTime": f"2025-06-01T12:00:0{i}.000Z", "endTime": f"2025-06-01T12:00:0{i}.500Z",
                "input": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Ticket: {ticket}"}],
                "output": {"role": "assistant", "content": "billing"}, "providedModelName": "gpt-4o-mini",
                "modelParameters": {"temperature": 0}, "usageDetails": {"input": 31, "output": 1, "total": 32},
                "totalCost": 0.0000051, "promptName": "triage", "promptVersion": 1})
        yield server


def test_sync_and_write_back_follow_the_spec(stub: LangfuseStub, engine: Engine) -> None:
    connector = LangfuseConnector(name="lf", options={"url": stub.url, "default_model": "gpt-4o-mini"})
    report = sync_connector(engine=engine, connector=connector)
    assert (report.versions_added, report.logs_added) == (2, 2), report.to_dict()
    assert report.skipped == {"bad_prompt_version": 1}  # the placeholder message
    with engine.connect() as conn:
        versions = conn.execute(text("select p.name, v.external_version, v.labels, v.model, v.params from promptversion v "
                                     "join prompt p on p.id = v.prompt_id order by p.name")).all()
        logs = conn.execute(text("select external_id, inputs, output, input_tokens, output_tokens, cost, latency_s "
                                 "from logrecord order by external_id")).all()
    assert [(n, v, json.loads(lb), m, json.loads(p)) for n, v, lb, m, p in versions] == [
        ("qa", "1", ["production"], "gpt-4o-mini", {"max_tokens": 8}),
        ("triage", "1", ["production"], "gpt-4o-mini", {"temperature": 0})]
    assert logs[0] == ("obs-0", '{"ticket":"I was charged twice"}', "billing", 31, 1, 0.0000051, 0.5)
    assert sync_connector(engine=engine, connector=connector).logs_added == 0

    result = connector.write_version(prompt="triage", template=Template.chat(("user", "Sort: {{ticket}}")),
                                     model="gpt-4o-mini", params={"temperature": 0}, label="staging")
    assert result.created and result.external_version == "3"
    connector.move_label(prompt="triage", external_version="3", label="production")
    labels = {v["version"]: v["labels"] for v in stub.prompts["triage"]}
    assert labels == {1: [], 2: [], 3: ["latest", "production", "staging"]}
    assert stub.violations == []
    assert {"GET /api/public/v2/prompts", "POST /api/public/v2/prompts", "GET /api/public/v2/observations",
            "PATCH /api/public/v2/prompts/triage/versions/3"} <= set(stub.calls)


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    with pytest.raises(ConfigError, match="LANGFUSE_PUBLIC_KEY is not set"):
        LangfuseConnector(name="lf", options={"url": "http://127.0.0.1:9"})


def test_wrong_credentials_name_the_url(stub: LangfuseStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "wrong")
    with pytest.raises(ConnectorError, match="HTTP 401") as info:
        list(LangfuseConnector(name="lf", options={"url": stub.url}).read_prompts())
    assert stub.url in (info.value.where or "") and "credentials" in (info.value.hint or "")


def test_the_stub_refuses_what_the_spec_refuses(stub: LangfuseStub) -> None:
    import httpx

    auth = ("pk-lf-test", "sk-lf-test")
    bad = httpx.post(f"{stub.url}/api/public/v2/prompts", json={"type": "chat", "prompt": "no name"}, auth=auth)
    assert bad.status_code == 400 and len(stub.violations) == 1
    stub.observations.append({"id": "x", "type": "GENERATION", "startTime": "2030-01-01T00:00:00Z"})
    stub.prompts["broken"] = [{"type": "chat", "name": "broken", "version": "one"}]  # not what the spec says
    httpx.get(f"{stub.url}/api/public/v2/prompts/broken", params={"version": "one"}, auth=auth)
    assert any("prompts/broken" in v for v in stub.violations)
