"""The bad-input corpus (tests/corpus/): every malformed input gets a clear error naming its
location, the valid data around it is kept, and no traceback or 500 reaches the user.

Each case is a file plus a sidecar `NAME.expect.json`; the folder picks the surface it feeds:

    prompt_files/  a prompt file for the files connector, synced beside a valid prompt and its logs
    log_lines/     bad JSONL line(s), synced between two valid lines of the same file
    gold/          a gold-set CSV/JSONL imported with `evals.gold.import_file`
    api/           a request body sent to the FastAPI app with a real token
    config/        a trimloop.toml read through TRIMLOOP_CONFIG (then the connectors or
                   [prompts.NAME] options, per the case's "stage")
    connectors/    canned MLflow / Phoenix / Langfuse answers (httpx.MockTransport) over a valid
                   baseline server, synced with `sync_connector`

Adding a case is adding a file and its `.expect.json`; tests/corpus/README.md has the fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from trimloop.core.egress import Egress
from trimloop.core.errors import ConfigError, UserError

CORPUS = Path(__file__).parent / "corpus"
SURFACES = {"prompt_files": "prompt_file", "log_lines": "log_line", "gold": "gold_import", "api": "api_body",
            "config": "config", "connectors": "connector_response"}

GOOD_PROMPT = """---
model: big/model
params: {temperature: 0}
labels: [production]
---
system:
Sort tickets into billing, bug or other.

user:
Ticket: {{ticket}}
"""


def good_line(n: int) -> bytes:
    return json.dumps({"id": f"ok-{n}", "prompt": "good", "version": "1", "inputs": {"ticket": f"ticket {n}"},
                       "output": "billing", "called_at": f"2025-06-01T12:00:0{n}Z"}).encode() + b"\n"


def cases() -> list[Any]:
    out = []
    for folder in sorted(SURFACES):
        for path in sorted((CORPUS / folder).iterdir()):
            if path.name.endswith(".expect.json") or path.name.startswith("."):
                continue
            out.append(pytest.param(path, id=f"{folder}/{path.name}"))
    return out


def expectation(path: Path) -> dict[str, Any]:
    sidecar = path.with_name(path.name.rsplit(".", 1)[0] + ".expect.json")
    assert sidecar.is_file(), f"{path.name} has no {sidecar.name}"
    expect = json.loads(sidecar.read_text(encoding="utf-8"))
    assert expect["surface"] == SURFACES[path.parent.name], f"{sidecar.name}: wrong surface for its folder"
    return expect


def clean(text: str) -> None:
    """No internals reach the user: no traceback, no Python exception reprs."""
    assert "Traceback" not in text and 'File "' not in text, text


def test_corpus_is_complete() -> None:
    found = cases()
    assert len(found) >= 40
    for folder in SURFACES:
        for sidecar in (CORPUS / folder).glob("*.expect.json"):
            stem = sidecar.name.removesuffix(".expect.json")
            assert [p for p in (CORPUS / folder).iterdir() if p.name.rsplit(".", 1)[0] == stem
                    and p != sidecar], f"{sidecar.name} has no case file"


@pytest.mark.parametrize("path", cases())
def test_case(path: Path, tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    expect = expectation(path)
    run = {"prompt_files": _prompt_file, "log_lines": _log_line, "gold": _gold, "api": _api,
           "config": _config, "connectors": _connector}[path.parent.name]
    run(path, expect, tmp_path=tmp_path, engine=engine, monkeypatch=monkeypatch)


# -- the files connector -------------------------------------------------------------------------
def _files_store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    (store / "prompts").mkdir(parents=True)
    (store / "logs").mkdir()
    (store / "prompts" / "good.md").write_text(GOOD_PROMPT)
    return store


def _sync_files(store: Path, tmp_path: Path, engine: Engine) -> Any:
    from trimloop.connectors.sync import sync
    from trimloop.core.settings import Settings

    settings = Settings(home=tmp_path / "home", connectors={"local": {"type": "files", "path": str(store)}})
    [report] = sync(engine=engine, settings=settings)
    assert report.fatal is None, report.fatal
    clean(json.dumps(report.to_dict()))
    return report


def _stored(engine: Engine) -> tuple[list[tuple[str, list[str]]], int]:
    from trimloop.core.tables import LogRecord, Prompt, PromptVersion

    with engine.connect() as conn:
        versions = conn.execute(select(Prompt.name, PromptVersion.labels).join(
            PromptVersion, PromptVersion.prompt_id == Prompt.id).order_by(Prompt.name)).all()
        logs = conn.execute(select(func.count()).select_from(LogRecord)).scalar_one()
    return [(n, list(labels)) for n, labels in versions], logs


def _matches_where(actual: str, wanted: str) -> bool:
    return actual == wanted or actual.startswith(wanted + " ")


def _prompt_file(path: Path, expect: dict[str, Any], *, tmp_path: Path, engine: Engine, **_: Any) -> None:
    store = _files_store(tmp_path)
    target = expect.get("install_as", f"prompts/{path.name}")
    (store / target).parent.mkdir(parents=True, exist_ok=True)
    (store / target).write_bytes(path.read_bytes())
    (store / "logs" / "good.jsonl").write_bytes(good_line(1) + good_line(2))
    report = _sync_files(store, tmp_path, engine)
    assert len(report.problems) == 1, [str(p) for p in report.problems]
    problem = report.problems[0]
    where = expect["where"].format(file=target)
    assert _matches_where(problem.where, where), f"{problem.where!r} does not name {where!r}"
    for words in expect["says"]:
        assert words in problem.message, f"{words!r} not in {problem.message!r}"
    assert _stored(engine) == ([("good", ["production"])], 2)  # the valid prompt and its logs are kept


def _log_line(path: Path, expect: dict[str, Any], *, tmp_path: Path, engine: Engine, **_: Any) -> None:
    store = _files_store(tmp_path)
    (store / "logs" / path.name).write_bytes(good_line(1) + path.read_bytes() + good_line(2))
    report = _sync_files(store, tmp_path, engine)
    assert len(report.problems) == 1, [str(p) for p in report.problems]
    problem = report.problems[0]
    assert problem.where == expect["where"].format(file=f"logs/{path.name}")
    assert problem.reason == expect["reason"], str(problem)
    for words in expect["says"]:
        assert words in problem.message, f"{words!r} not in {problem.message!r}"
    assert report.logs_added == 2 and _stored(engine)[1] == 2


# -- gold-set import -----------------------------------------------------------------------------
def _gold(path: Path, expect: dict[str, Any], *, tmp_path: Path, engine: Engine, **_: Any) -> None:
    from trimloop.core.db import session_scope
    from trimloop.evals.gold import ColumnMapping, import_file

    _sync_files(_files_store(tmp_path), tmp_path, engine)
    mapping = ColumnMapping(inputs=expect["mapping"]["inputs"], expected=expect["mapping"].get("expected"))
    with session_scope(engine) as session:
        if "error" in expect:
            with pytest.raises(UserError) as info:
                import_file(session, prompt_id=1, path=path, mapping=mapping)
            text = str(info.value)
            clean(text)
            assert info.value.where, text
            for words in expect["error"]["says"]:
                assert words in text, f"{words!r} not in {text!r}"
            return
        result = import_file(session, prompt_id=1, path=path, mapping=mapping)
    assert result.rows == expect["rows"]
    got = [(p.line, p.message) for p in result.problems]
    assert len(got) == len(expect["problems"]), got
    for (line, message), wanted in zip(got, expect["problems"], strict=True):
        assert line == wanted["line"] and wanted["says"] in message, got
        clean(message)


# -- the REST API --------------------------------------------------------------------------------
def _api(path: Path, expect: dict[str, Any], *, tmp_path: Path, engine: Engine, **_: Any) -> None:
    from tests.api.conftest import PROMPT_V1, make_suggestion, synced
    from trimloop.api.app import create_app
    from trimloop.core import store
    from trimloop.core.db import session_scope
    from trimloop.core.settings import Settings

    folder = tmp_path / "prompt-store"
    (folder / "prompts" / "triage").mkdir(parents=True)
    (folder / "prompts" / "triage" / "1.md").write_text(PROMPT_V1)
    settings = Settings(home=tmp_path / "home", connectors={"local": {"type": "files", "path": str(folder)}})
    prompt_id = synced(engine, settings)
    suggestion_id = make_suggestion(engine, prompt_id)
    with session_scope(engine) as session:
        _, token = store.create_token(session=session, name="corpus", role=expect["role"], actor="test")
    ids = {"prompt_id": str(prompt_id), "suggestion_id": str(suggestion_id)}
    body, route = path.read_bytes(), expect["path"]
    for key, value in ids.items():
        body = body.replace(f'"{{{key}}}"'.encode(), value.encode()).replace(f"{{{key}}}".encode(), value.encode())
        route = route.replace(f"{{{key}}}", value)
    with TestClient(create_app(settings, engine), raise_server_exceptions=False) as client:
        response = client.request(expect["method"], route, content=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code != 500, response.text
    assert response.status_code == expect["status"], response.text
    clean(response.text)
    error = response.json()["error"]
    assert set(error) == {"code", "message", "where", "hint"}
    if "where" in expect:
        assert error["where"] == expect["where"], error
    for words in expect["says"]:
        assert words in error["message"], f"{words!r} not in {error['message']!r}"


# -- trimloop.toml -------------------------------------------------------------------------------
def _config(path: Path, expect: dict[str, Any], *, monkeypatch: pytest.MonkeyPatch, **_: Any) -> None:
    from trimloop.connectors import registry
    from trimloop.core.settings import load_settings
    from trimloop.optimizer.config import check_run_config, run_config

    monkeypatch.setenv("TRIMLOOP_CONFIG", str(path))
    stage = expect["stage"]
    with pytest.raises(ConfigError) as info:
        settings = load_settings()
        assert stage != "settings", "load_settings accepted the file"
        if stage == "connectors":
            registry.from_settings(settings)
        elif stage == "options":
            check_run_config(settings, "triage")
        else:
            run_config(settings, "triage")
    text = str(info.value)
    clean(text)
    if stage == "settings":
        assert info.value.where == str(path), text
    else:
        assert expect.get("where", "") in (info.value.where or ""), text
    for words in expect["says"]:
        assert words in text, f"{words!r} not in {text!r}"
    for secret in expect.get("never", []):
        assert secret not in text


# -- connector responses -------------------------------------------------------------------------
URLS = {"mlflow": "http://mlflow.test", "phoenix": "http://phoenix.test", "langfuse": "http://langfuse.test"}
_ML_VERSION = {"name": "qa", "version": "1", "tags": [
    {"key": "mlflow.prompt.is_prompt", "value": "true"}, {"key": "mlflow.prompt.text", "value": "Q: {{q}}"},
    {"key": "_mlflow_prompt_type", "value": "text"}, {"key": "_mlflow_prompt_model_config", "value": '{"model_name": "m"}'}]}
_ML_TRACE = {"trace_id": "t1", "request_time": "2025-01-01T00:00:00Z", "execution_duration": "1.5s", "state": "OK",
             "trace_metadata": {"mlflow.traceInputs": '{"q": "one"}', "mlflow.traceOutputs": '"an answer"'},
             "tags": {"mlflow.linkedPrompts": '[{"name": "qa", "version": "1"}]'}, "assessments": []}
_PX_SPAN = {"context": {"span_id": "s1", "trace_id": "t-s1"}, "start_time": "2025-06-01T12:00:00+00:00",
            "end_time": "2025-06-01T12:00:00+00:00", "attributes": {
                "openinference.span.kind": "LLM", "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "Hi Bob", "llm.output_messages.0.message.content": "Hello"}}
BASELINES: dict[str, dict[str, Any]] = {  # a valid server: one prompt version and one call each
    "mlflow": {
        "GET /api/2.0/mlflow/registered-models/search": {"json": {"registered_models": [
            {"name": "qa", "aliases": [{"alias": "production", "version": "1"}]}]}},
        "GET /api/2.0/mlflow/model-versions/search": {"json": {"model_versions": [_ML_VERSION]}},
        "GET /api/2.0/mlflow/experiments/search": {"json": {"experiments": [
            {"experiment_id": "0", "name": "Default"}]}},
        "POST /api/3.0/mlflow/traces/search": {"json": {"traces": [_ML_TRACE]}},
    },
    "phoenix": {
        "GET /v1/prompts": {"json": {"data": [{"id": "UDox", "name": "greet"}], "next_cursor": None}},
        "GET /v1/prompts/greet/versions": {"json": {"data": [{
            "id": "VjE=", "model_provider": "OPENAI", "model_name": "m", "template_type": "CHAT",
            "template": {"type": "chat", "messages": [{"role": "user", "content": "Hi {{x}}"}]},
            "template_format": "MUSTACHE", "invocation_parameters": {"type": "openai", "openai": {}}}],
            "next_cursor": None}},
        "GET /v1/prompt_versions/VjE=/tags": {"json": {"data": [{"name": "production"}], "next_cursor": None}},
        "GET /v1/projects": {"json": {"data": [{"id": "UHJvamVjdDox", "name": "default"}], "next_cursor": None}},
        "GET /v1/projects/default/spans": {"json": {"data": [_PX_SPAN], "next_cursor": None}},
        "GET /v1/projects/default/span_annotations": {"json": {"data": [], "next_cursor": None}},
    },
    "langfuse": {
        "GET /api/public/v2/prompts": {"json": {"data": [{"name": "qa", "versions": [1]}], "meta": {"totalPages": 1}}},
        "GET /api/public/v2/prompts/qa": {"json": {"name": "qa", "version": 1, "type": "text", "prompt": "Q: {{q}}\nA:",
                                                   "config": {"model": "m"}, "labels": ["production"]}},
        "GET /api/public/v2/observations": {"json": {"data": [{
            "id": "o1", "traceId": "tr-o1", "type": "GENERATION", "startTime": "2025-06-01T12:00:00.000Z",
            "endTime": "2025-06-01T12:00:00.000Z", "input": "Q: hi\nA:", "output": "yes", "providedModelName": "m",
            "promptName": "qa", "promptVersion": 1}], "meta": {}}},
        "GET /api/public/v2/scores": {"json": {"data": [], "meta": {"totalPages": 1}}},
    },
}


def fake_server(routes: dict[str, dict[str, Any]]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        answer = routes.get(f"{request.method} {request.url.path}")
        if answer is None:
            return httpx.Response(404, json={"error": "no such route in the fake"})
        if answer.get("error") == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        if "text" in answer:
            return httpx.Response(answer.get("status", 200), text=answer["text"])
        return httpx.Response(answer.get("status", 200), json=answer["json"])

    return httpx.MockTransport(handle)


def make_connector(kind: str, routes: dict[str, dict[str, Any]]) -> Any:
    from trimloop.connectors.langfuse import LangfuseConnector
    from trimloop.connectors.mlflow import MlflowConnector
    from trimloop.connectors.phoenix import PhoenixConnector

    cls = {"mlflow": MlflowConnector, "phoenix": PhoenixConnector, "langfuse": LangfuseConnector}[kind]
    return cls(name=kind, options={"url": URLS[kind]}, transport=fake_server(routes),
               egress=Egress.parse([httpx.URL(URLS[kind]).host]))


def _connector(path: Path, expect: dict[str, Any], *, engine: Engine, monkeypatch: pytest.MonkeyPatch,
               **_: Any) -> None:
    from trimloop.connectors.sync import sync_connector

    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-corpus")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-corpus")
    case = json.loads(path.read_text(encoding="utf-8"))
    routes = {**BASELINES[case["connector"]], **case["routes"]}
    with make_connector(case["connector"], routes) as connector:
        report = sync_connector(engine=engine, connector=connector)
    clean(json.dumps(report.to_dict()))
    if "fatal" in expect:
        assert report.fatal is not None, report.to_dict()
        for words in [*expect["fatal"], expect["url"]]:
            assert words in report.fatal, f"{words!r} not in {report.fatal!r}"
    else:
        assert report.fatal is None, report.fatal
        got = {p.where: p.message for p in report.problems}
        assert len(got) == len(expect["problems"]), got
        for wanted in expect["problems"]:
            assert wanted["where"] in got, got
            assert wanted["says"] in got[wanted["where"]], got
    assert (report.versions_added, report.logs_added) == (expect["versions_added"], expect["logs_added"]), \
        report.to_dict()
    with make_connector(case["connector"], routes) as connector:  # the cursor it left is usable
        again = sync_connector(engine=engine, connector=connector)
    assert again.fatal == report.fatal and again.logs_added == 0, again.to_dict()
