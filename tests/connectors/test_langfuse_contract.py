"""The langfuse connector, contract-tested: every request it sends and every response the stub
sends back is validated against Langfuse's OpenAPI spec (tests/connectors/data). Not a live server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import labels_by_version, stored_json
from tests.connectors.langfuse_stub import LangfuseStub
from trimloop.connectors.base import Looked
from trimloop.connectors.langfuse import LangfuseConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core.errors import ConfigError, ConnectorError
from trimloop.core.templates import Template

SYSTEM = "You sort support tickets into billing, bug or other."


def score(id: str, data_type: str, name: str, value: Any, string_value: str | None = None, *,
          source: str = "API", trace_id: str | None = None, observation_id: str | None = None,
          session_id: str | None = None, at: str = "2025-06-01T12:05:00.000Z") -> dict[str, Any]:
    """A score as GET /api/public/v2/scores returns it (GetScoresResponseData)."""
    row: dict[str, Any] = {
        "id": id, "dataType": data_type, "name": name, "value": value, "source": source,
        "traceId": trace_id, "observationId": observation_id, "sessionId": session_id, "datasetRunId": None,
        "timestamp": at, "createdAt": at, "updatedAt": at, "authorUserId": None, "comment": None,
        "metadata": {}, "configId": None, "queueId": None, "environment": "default",
        "trace": {"userId": "u-1", "tags": [], "environment": "default"}}
    if string_value is not None:
        row["stringValue"] = string_value
    return row


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
        server.scores += [
            score("s-num", "NUMERIC", "accuracy", 0.9, source="EVAL", trace_id="trace-0", observation_id="obs-0"),
            score("s-bool", "BOOLEAN", "thumbs_up", 1, "True", trace_id="trace-0", at="2025-06-01T12:06:00.000Z"),
            score("s-cat", "CATEGORICAL", "label_ok", 0, "wrong", source="ANNOTATION", trace_id="trace-1",
                  observation_id="obs-1"),
            score("s-no", "BOOLEAN", "thumbs_up", 0, "False", trace_id="trace-1", at="2025-06-01T12:07:00.000Z"),
            score("s-fix", "CORRECTION", "output", 0, "bug", source="ANNOTATION", trace_id="trace-1",
                  observation_id="obs-1", at="2025-06-01T12:08:00.000Z"),
            # not on a synced generation: another observation of the trace, a session, an older trace
            score("s-span", "NUMERIC", "relevance", 0.2, trace_id="trace-0", observation_id="span-0"),
            score("s-session", "NUMERIC", "csat", 5, session_id="sess-1"),
            score("s-old", "NUMERIC", "accuracy", 1, trace_id="trace-0", at="2025-05-01T00:00:00.000Z"),
        ]
        yield server


def test_sync_and_write_back_follow_the_spec(stub: LangfuseStub, engine: Engine) -> None:
    connector = LangfuseConnector(name="lf", options={"url": stub.url, "default_model": "gpt-4o-mini"})
    report = sync_connector(engine=engine, connector=connector)
    assert (report.versions_added, report.logs_added) == (2, 2), report.to_dict()
    assert report.skipped == {"bad_prompt_version": 1}  # the placeholder message
    assert [str(x) for x in report.looked] == [
        "the project of the keys in LANGFUSE_PUBLIC_KEY, every environment (default 2): 2 read"]
    assert report.notices == []
    with engine.connect() as conn:
        versions = conn.execute(text("select p.name, v.external_version, v.id, v.model, v.params from promptversion v "
                                     "join prompt p on p.id = v.prompt_id order by p.name")).all()
        logs = conn.execute(text("select external_id, inputs, output, input_tokens, output_tokens, cost, latency_s "
                                 "from logrecord order by external_id")).all()
    labels = labels_by_version(engine)
    assert [(n, v, labels[vid], m, stored_json(p)) for n, v, vid, m, p in versions] == [
        ("qa", "1", ["production"], "gpt-4o-mini", {"max_tokens": 8}),
        ("triage", "1", ["production"], "gpt-4o-mini", {"temperature": 0})]
    first = logs[0]
    assert (*first[:1], stored_json(first[1]), *first[2:]) == (
        "obs-0", {"ticket": "I was charged twice"}, "billing", 31, 1, 0.0000051, 0.5)
    assert _feedback(engine) == {
        "obs-0": [{"name": "accuracy", "value": 0.9, "source": "eval"},
                  {"name": "thumbs_up", "value": True, "source": "api"}],
        "obs-1": [{"name": "label_ok", "value": "wrong", "source": "annotation"},
                  {"name": "thumbs_up", "value": False, "source": "api"},
                  {"name": "output", "value": "bug", "source": "annotation"}]}
    assert sync_connector(engine=engine, connector=connector).logs_added == 0

    result = connector.write_version(prompt="triage", template=Template.chat(("user", "Sort: {{ticket}}")),
                                     model="gpt-4o-mini", params={"temperature": 0}, label="staging")
    assert result.created and result.external_version == "3"
    connector.move_label(prompt="triage", external_version="3", label="production")
    labels = {v["version"]: v["labels"] for v in stub.prompts["triage"]}
    assert labels == {1: [], 2: [], 3: ["latest", "production", "staging"]}
    assert stub.violations == []
    assert {"GET /api/public/v2/prompts", "POST /api/public/v2/prompts", "GET /api/public/v2/observations",
            "GET /api/public/v2/scores", "PATCH /api/public/v2/prompts/triage/versions/3"} <= set(stub.calls)


def _feedback(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(text("select external_id, feedback from logrecord order by external_id")).all()
    return {external_id: stored_json(feedback) for external_id, feedback in rows}


def test_scores_are_paged_and_a_bad_one_is_reported_and_skipped(stub: LangfuseStub, engine: Engine) -> None:
    stub.scores.append(score("s-bad", "NUMERIC", "accuracy", "high", trace_id="trace-1",
                             observation_id="obs-1", at="2025-06-01T12:09:00.000Z"))
    connector = LangfuseConnector(name="lf", options={"url": stub.url, "default_model": "gpt-4o-mini",
                                                      "page_size": 2})
    report = sync_connector(engine=engine, connector=connector)
    assert report.logs_added == 2 and report.skipped == {"bad_prompt_version": 1, "bad_score": 1}, report.to_dict()
    [problem] = [p for p in report.problems if p.reason == "bad_score"]
    assert problem.where == f"{stub.url}/api/public/v2/scores score s-bad" and "'high'" in problem.message
    assert [f["name"] for f in _feedback(engine)["obs-1"]] == ["label_ok", "thumbs_up", "output"]
    assert [f["name"] for f in _feedback(engine)["obs-0"]] == ["accuracy", "thumbs_up"]
    scores_pages = [c for c in stub.calls if c == "GET /api/public/v2/scores"]
    assert len(scores_pages) == 4  # 8 scores since the window start (not s-old), 2 a page
    # the stub saw the off-spec score: the only response that broke the contract
    assert len(stub.violations) == 1 and "response GET /api/public/v2/scores" in stub.violations[0]


def test_scores_window_starts_at_the_new_calls(stub: LangfuseStub, engine: Engine) -> None:
    connector = LangfuseConnector(name="lf", options={"url": stub.url, "default_model": "gpt-4o-mini",
                                                      "lookback_s": 0})
    sync_connector(engine=engine, connector=connector)
    stub.observations.append({
        "id": "obs-2", "traceId": "trace-2", "type": "GENERATION", "name": "triage",
        "startTime": "2025-06-02T09:00:00.000Z", "endTime": "2025-06-02T09:00:01.000Z",
        "input": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Ticket: refund please"}],
        "output": {"role": "assistant", "content": "billing"}, "providedModelName": "gpt-4o-mini",
        "promptName": "triage", "promptVersion": 1})
    stub.scores.append(score("s-new", "BOOLEAN", "thumbs_up", 1, "True", trace_id="trace-2",
                             at="2025-06-02T09:01:00.000Z"))
    stub.calls.clear()
    assert sync_connector(engine=engine, connector=connector).logs_added == 1
    assert _feedback(engine)["obs-2"] == [{"name": "thumbs_up", "value": True, "source": "api"}]
    assert stub.calls.count("GET /api/public/v2/scores") == 1 and stub.violations == []


def test_a_project_with_no_generations_says_which_keys_it_used(stub: LangfuseStub) -> None:
    stub.observations.clear()
    with LangfuseConnector(name="lf", options={"url": stub.url}) as connector:
        [looked] = [i for i in connector.read_logs(cursor=None) if isinstance(i, Looked)]
    assert looked.read == 0 and looked.notice is not None
    assert looked.notice.where == f"{stub.url} (keys from LANGFUSE_PUBLIC_KEY)"
    assert looked.notice.message == "the project of these keys holds no generations"
    assert "sk-lf-test" not in str(looked.notice) and "pk-lf-test" not in str(looked.notice)


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
