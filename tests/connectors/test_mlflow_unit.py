"""The mlflow connector with a fake MLflow (httpx.MockTransport): shapes, bad input, server failures."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from trimloop.connectors.base import Checkpoint, LogItem, Looked, Problem, PromptItem
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
        self.experiments = [{"experiment_id": "0", "name": "Default"}]
        self.elsewhere: dict[str, list[dict[str, Any]]] = {}  # experiment id → its traces, when not "0"
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path.endswith("registered-models/search"):
            return httpx.Response(200, json={"registered_models": [
                {"name": "qa", "aliases": [{"alias": "production", "version": "1"}]}]})
        if path.endswith("model-versions/search"):
            return httpx.Response(200, json={"model_versions": self.versions})
        if path.endswith("experiments/search"):
            return httpx.Response(200, json={"experiments": self.experiments})
        if path.endswith("traces/search"):
            body = json.loads(request.content)
            experiment = body["locations"][0]["mlflow_experiment"]["experiment_id"]
            if experiment != "0":
                return httpx.Response(200, json={"traces": self.elsewhere.get(experiment, [])})
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
    assert json.loads(cursor) == {"experiments": {"0": {"ts": 1735689601000, "ids": ["t2", "t3"]}}}
    assert [str(i) for i in out if isinstance(i, Looked)] == ["experiment 'Default' (id 0): 3 read"]
    fake.traces = [[trace("t2", "2025-01-01T00:00:01Z", '{"q": "2"}'), trace("t4", "2025-01-01T00:00:02Z", '{"q": "4"}')]]
    again = [i.external_id for i in make(fake).read_logs(cursor=cursor) if isinstance(i, LogItem)]
    assert again == ["t4"]
    assert "trace.timestamp_ms >= 1735689601000" in fake.requests[-1].content.decode()


@pytest.mark.parametrize("options", [{}, {"experiment_ids": ["0"]}])
def test_a_cursor_saved_before_cursors_were_per_experiment_resumes_there(options: dict[str, Any]) -> None:
    """Before, one {ts, ids} covered the configured experiments (default "0"): it still resumes."""
    fake = FakeMlflow()
    fake.traces = [[trace("t2", "2025-01-01T00:00:01Z", '{"q": "2"}'), trace("t4", "2025-01-01T00:00:02Z", '{"q": "4"}')]]
    fake.experiments.append({"experiment_id": "5", "name": "support-bot"})
    fake.elsewhere["5"] = [trace("t9", "2024-01-01T00:00:00Z", '{"q": "9"}')]
    old = json.dumps({"ts": 1735689601000, "ids": ["t2", "t3"]})
    out = list(make(fake, **options).read_logs(cursor=old))
    read = [i.external_id for i in out if isinstance(i, LogItem)]
    assert read == (["t4", "t9"] if not options else ["t4"])  # experiment 5 was never read: from its start
    cursor = json.loads([i for i in out if isinstance(i, Checkpoint)][-1].cursor)
    assert cursor["experiments"]["0"] == {"ts": 1735689602000, "ids": ["t4"]}


def test_an_empty_configured_experiment_names_where_the_traces_are_and_the_line_to_add() -> None:
    fake = FakeMlflow()
    fake.traces = [[]]
    fake.experiments += [{"experiment_id": "5", "name": "support-bot"}, {"experiment_id": "6", "name": "idle"}]
    fake.elsewhere["5"] = [trace(f"s{i}", "2025-01-01T00:00:00Z", "{}") for i in range(3)]
    out = list(make(fake, experiment_ids=["0"]).read_logs(cursor=None))
    assert not [i for i in out if isinstance(i, (LogItem, Problem))]
    [looked] = [i for i in out if isinstance(i, Looked)]
    assert str(looked) == "experiment 'Default' (id 0): 0 read" and looked.notice is not None
    assert str(looked.notice) == (
        f"{URL} experiment 'Default' (id 0): holds no traces; traces are in experiment 'support-bot' (id 5): "
        "3 traces (hint: set experiment_ids = [\"0\", \"5\"] under [connectors.ml], or remove experiment_ids "
        "to read every experiment)")
    gone = [i for i in make(fake, experiment_ids=["42"]).read_logs(cursor=None) if isinstance(i, Looked)]
    assert gone[0].notice is not None and gone[0].notice.reason == "no_such_experiment"
    assert "is not an experiment there" in gone[0].notice.message and '["5"]' in (gone[0].notice.hint or "")


def test_every_experiment_is_read_by_default_and_an_empty_server_says_so(engine: Engine) -> None:
    fake = FakeMlflow()
    fake.traces = [[]]
    fake.experiments.append({"experiment_id": "5", "name": "support-bot"})
    fake.elsewhere["5"] = [trace("s1", "2025-01-01T00:00:00Z", '{"q": "one"}')]
    report = sync_connector(engine=engine, connector=make(fake))
    assert report.logs_added == 1 and report.notices == []
    assert [str(x) for x in report.looked] == ["experiment 'Default' (id 0): 0 read",
                                               "experiment 'support-bot' (id 5): 1 read"]
    fake.elsewhere["5"] = []
    empty = [i for i in make(fake).read_logs(cursor=None) if isinstance(i, Looked)]
    assert empty[0].notice is not None and empty[0].notice.message == "no traces in any of its 2 experiments"


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
