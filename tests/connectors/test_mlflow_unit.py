"""The mlflow connector with a fake MLflow (httpx.MockTransport): shapes, bad input, server failures."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from trimloop.connectors.base import Checkpoint, LogItem, Problem, PromptItem
from trimloop.connectors.mlflow import MlflowConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core.egress import Egress
from trimloop.core.errors import ConfigError, ConnectorError

URL = "http://mlflow.test"


def version(number: str, text: str, kind: str = "text", config: dict[str, Any] | None = None) -> dict[str, Any]:
    tags = [{"key": "mlflow.prompt.is_prompt", "value": "true"}, {"key": "mlflow.prompt.text", "value": text},
            {"key": "_mlflow_prompt_type", "value": kind}]
    if config is not None:
        tags.append({"key": "_mlflow_prompt_model_config", "value": json.dumps(config)})
    return {"name": "qa", "version": number, "tags": tags}


def trace(trace_id: str, when: str, inputs: str, **meta: str) -> dict[str, Any]:
    return {"trace_id": trace_id, "request_time": when, "execution_duration": "1.5s", "state": "OK",
            "trace_metadata": {"mlflow.traceInputs": inputs, "mlflow.traceOutputs": '"an answer"', **meta},
            "tags": {"mlflow.linkedPrompts": '[{"name": "qa", "version": "1"}]'}, "assessments": []}


class FakeMlflow:
    """Answers the REST calls the connector makes, from canned pages."""

    def __init__(self) -> None:
        self.versions = [version("1", "Q: {{q}}", config={"model_name": "m", "temperature": 0}),
                         version("2", "Q: {{ q.text }}", config={"model_name": "m"}),
                         version("3", "Q: {{q}}!")]
        self.traces = [[trace("t1", "2025-01-01T00:00:00Z", '{"q": "one"}'),
                        trace("t2", "2025-01-01T00:00:01Z", '{"q": "tw')],  # truncated metadata
                       [trace("t3", "2025-01-01T00:00:01Z", '{"q": "three"}')]]
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("registered-models/search"):
            return httpx.Response(200, json={"registered_models": [
                {"name": "qa", "aliases": [{"alias": "production", "version": "1"}]}]})
        if path.endswith("model-versions/search"):
            return httpx.Response(200, json={"model_versions": self.versions})
        if path.endswith("traces/search"):
            body = json.loads(request.content)
            page = int(body.get("page_token") or 0)
            out: dict[str, Any] = {"traces": self.traces[page]}
            if page + 1 < len(self.traces):
                out["next_page_token"] = str(page + 1)
            return httpx.Response(200, json=out)
        if path.endswith("traces/get"):
            span = {"span_id": "s", "attributes": [
                {"key": "mlflow.spanInputs", "value": {"string_value": '{"q": "two"}'}},
                {"key": "mlflow.spanOutputs", "value": {"string_value": '"second"'}}]}
            return httpx.Response(200, json={"trace": {"spans": [span]}})
        return httpx.Response(404, json={"error_code": "ENDPOINT_NOT_FOUND"})


_made: list[MlflowConnector] = []


@pytest.fixture(autouse=True)
def _close_connectors() -> Any:
    """Close every connector a test made: an unclosed client warns when collected, and warnings
    are errors, so it would fail whichever later test happens to be running then."""
    yield
    while _made:
        _made.pop().close()


def make(handler: Any, **options: Any) -> MlflowConnector:
    connector = MlflowConnector(name="ml", options={"url": URL, **options}, transport=httpx.MockTransport(handler),
                                egress=Egress.parse(["mlflow.test"]))
    _made.append(connector)
    return connector


def test_prompt_versions_map_model_params_aliases_and_refuse_unknown_syntax() -> None:
    items = list(make(FakeMlflow()).read_prompts())
    good = [i for i in items if isinstance(i, PromptItem)]
    bad = {i.where: i for i in items if isinstance(i, Problem)}
    assert [(g.external_version, g.model, g.params, g.labels) for g in good] == [("1", "m", {"temperature": 0}, ["production"])]
    assert "unsupported template syntax" in bad[f"{URL} prompt 'qa' version 2"].message
    assert "no model" in bad[f"{URL} prompt 'qa' version 3"].message
    again = [i for i in make(FakeMlflow(), default_model="gpt-4o-mini").read_prompts() if isinstance(i, PromptItem)]
    assert [g.model for g in again] == ["m", "gpt-4o-mini"]


def test_traces_page_through_resume_from_cursor_and_fall_back_to_spans() -> None:
    fake = FakeMlflow()
    out = list(make(fake).read_logs(cursor=None))
    logs = [i for i in out if isinstance(i, LogItem)]
    assert [(i.external_id, i.inputs, i.output, i.latency_s) for i in logs] == [
        ("t1", {"q": "one"}, "an answer", 1.5), ("t2", {"q": "two"}, "second", 1.5), ("t3", {"q": "three"}, "an answer", 1.5)]
    cursor = [i for i in out if isinstance(i, Checkpoint)][-1].cursor
    assert json.loads(cursor) == {"ts": 1735689601000, "ids": ["t2", "t3"]}
    fake.traces = [[trace("t2", "2025-01-01T00:00:01Z", '{"q": "2"}'), trace("t4", "2025-01-01T00:00:02Z", '{"q": "4"}')]]
    again = [i.external_id for i in make(fake).read_logs(cursor=cursor) if isinstance(i, LogItem)]
    assert again == ["t4"]
    assert "trace.timestamp_ms >= 1735689601000" in fake.requests[-1].content.decode()


def test_sync_keeps_good_records_when_some_are_bad(engine: Engine) -> None:
    report = sync_connector(engine=engine, connector=make(FakeMlflow()))
    assert report.versions_added == 1 and report.logs_added == 3
    assert report.skipped == {"bad_prompt_version": 2}


@pytest.mark.parametrize(
    ("handler", "words"),
    [
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)), "cannot reach MLflow"),
        (lambda r: httpx.Response(500, text="Internal Server Error"), "HTTP 500"),
        (lambda r: httpx.Response(200, text="<html>login</html>"), "not JSON"),
        (lambda r: httpx.Response(200, json=[1, 2]), "unexpected shape"),
        (lambda r: httpx.Response(200, json={"registered_models": "nope"}), "unexpected 'registered_models'"),
    ],
)
def test_server_down_or_garbage_is_a_connector_error_naming_the_url(handler: Any, words: str, engine: Engine) -> None:
    with pytest.raises(ConnectorError) as info:
        list(make(handler).read_prompts())
    assert words in info.value.message and URL in (info.value.where or "")
    report = sync_connector(engine=engine, connector=make(handler))
    assert report.fatal is not None and words in report.fatal


def test_token_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="MLFLOW_TOKEN_X is not set"):
        make(FakeMlflow(), token_env="MLFLOW_TOKEN_X")
    monkeypatch.setenv("MLFLOW_TOKEN_X", "s3cret")
    fake = FakeMlflow()
    list(make(fake, token_env="MLFLOW_TOKEN_X").read_prompts())
    assert fake.requests[0].headers["authorization"] == "Bearer s3cret"
