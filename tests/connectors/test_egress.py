"""allowed_hosts in use: connectors and webhooks send requests only to allowed hosts, with real
servers on 127.0.0.1. "No request was sent" is proved with a listening socket: the kernel would
queue any connection made to it, so finding its backlog empty means no connection was attempted."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from trimloop.api import webhooks
from trimloop.api.app import create_app
from trimloop.connectors import registry
from trimloop.connectors.base import Checkpoint, Connector
from trimloop.connectors.http import JsonClient
from trimloop.connectors.mlflow import MlflowConnector
from trimloop.connectors.sync import sync, sync_connector
from trimloop.core import store
from trimloop.core.db import session_scope
from trimloop.core.egress import Egress, HostNotAllowed
from trimloop.core.settings import ConnectorConfig, Settings, WebhookConfig


class Trap:
    """A listening socket nobody accepts on: `untouched()` is True while no one connected."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def untouched(self) -> bool:
        self.sock.setblocking(False)
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return True
        conn.close()
        return False


class FakeMlflow:
    """Just enough of MLflow's REST API for a sync: no prompts, no traces; or a redirect."""

    def __init__(self, redirect_to: str | None = None) -> None:
        fake = self
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                fake.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                key = "traces" if "traces" in self.path else "registered_models"
                body = json.dumps({key: []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.sock.close()


@pytest.fixture
def mlflow() -> Iterator[FakeMlflow]:
    server = FakeMlflow()
    yield server
    server.close()


def settings_for(tmp_path: Path, url: str, allowed: list[str] | None) -> Settings:
    return Settings(home=tmp_path / "home", connectors={"ml": {"type": "mlflow", "url": url}}, allowed_hosts=allowed)


def test_allowed_host_works(tmp_path: Path, engine: Engine, mlflow: FakeMlflow) -> None:
    settings = settings_for(tmp_path, mlflow.url, [f"127.0.0.1:{mlflow.port}"])
    [report] = sync(engine=engine, settings=settings)
    assert report.fatal is None, report.fatal
    assert "GET /api/2.0/mlflow/registered-models/search?max_results=100" in mlflow.requests[0]


def test_loopback_works_by_default(tmp_path: Path, engine: Engine, mlflow: FakeMlflow) -> None:
    [report] = sync(engine=engine, settings=settings_for(tmp_path, mlflow.url, None))
    assert report.fatal is None and mlflow.requests


def test_disallowed_host_is_refused_before_any_connection(tmp_path: Path, engine: Engine, trap: Trap,
                                                          mlflow: FakeMlflow) -> None:
    settings = settings_for(tmp_path, trap.url + "/mlflow", [f"127.0.0.1:{mlflow.port}"])
    with pytest.raises(HostNotAllowed) as info:
        sync(engine=engine, settings=settings)
    error = info.value
    assert error.where == "[connectors.ml] url"
    assert f"connector 'ml' (mlflow) may not send requests to 127.0.0.1:{trap.port}" in error.message
    assert f"'127.0.0.1:{mlflow.port}'" in error.message and "allowed_hosts" in error.message
    assert f'add "127.0.0.1:{trap.port}"' in (error.hint or "") and "TRIMLOOP_ALLOWED_HOSTS" in (error.hint or "")
    assert trap.untouched()


@pytest.mark.parametrize("kind", ["mlflow", "phoenix", "langfuse"])
def test_every_http_connector_is_refused_when_built(kind: str, trap: Trap, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)  # refused before its keys are even looked up
    with pytest.raises(HostNotAllowed) as info:
        registry.create("store", ConnectorConfig(type=kind, url=f"http://169.254.169.254:{trap.port}/"),
                        egress=Egress.parse(["*.example.com"]))
    assert f"connector 'store' ({kind})" in info.value.message and "169.254.169.254" in info.value.message
    with pytest.raises(HostNotAllowed):  # and built directly, with the default list
        registry.load(kind)(name="store", options={"url": f"http://10.1.2.3:{trap.port}/"})
    assert trap.untouched()


def test_every_request_is_checked_not_only_the_base_url(mlflow: FakeMlflow, trap: Trap) -> None:
    client = JsonClient(base_url=mlflow.url, service="MLflow", connector="ml",
                        egress=Egress.parse([f"127.0.0.1:{mlflow.port}"]))
    assert client.get("/api/2.0/mlflow/registered-models/search") == {"registered_models": []}
    with pytest.raises(HostNotAllowed) as info:
        client.get(f"{trap.url}/elsewhere")  # an absolute URL replaces the base
    assert info.value.where == f"GET http://127.0.0.1:{trap.port}"
    client.close()
    assert trap.untouched()


def test_wildcard_rules_with_names(trap: Trap) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.host))
        key = "traces" if "traces" in request.url.path else "registered_models"
        return httpx.Response(200, json={key: []})

    egress = Egress.parse(["*.example.com"])
    for host in ("mlflow.example.com", "a.b.example.com"):
        connector = MlflowConnector(name="ml", options={"url": f"https://{host}"}, egress=egress,
                                    transport=httpx.MockTransport(answer))
        assert list(connector.read_prompts()) == []
    assert seen == ["mlflow.example.com", "a.b.example.com"]
    for host in ("example.com", "example.com.evil.net", "notexample.com"):
        with pytest.raises(HostNotAllowed):
            MlflowConnector(name="ml", options={"url": f"https://{host}"}, egress=egress,
                            transport=httpx.MockTransport(answer))
    assert len(seen) == 2


def test_redirect_to_a_disallowed_host_is_refused(engine: Engine, trap: Trap) -> None:
    bouncer = FakeMlflow(redirect_to=trap.url)
    try:
        connector = MlflowConnector(name="ml", options={"url": bouncer.url},
                                    egress=Egress.parse([f"127.0.0.1:{bouncer.port}"]))
        report = sync_connector(engine=engine, connector=connector)
        connector.close()
    finally:
        bouncer.close()
    assert report.fatal is not None and bouncer.requests
    assert f"HTTP 302, a redirect to http://127.0.0.1:{trap.port}" in report.fatal
    assert "not in allowed_hosts" in report.fatal and "does not follow redirects" in report.fatal
    assert trap.untouched()


def test_redirect_to_an_allowed_host_is_not_followed_either(engine: Engine, mlflow: FakeMlflow) -> None:
    bouncer = FakeMlflow(redirect_to=mlflow.url)
    try:
        connector = MlflowConnector(name="ml", options={"url": bouncer.url}, egress=Egress.parse(["loopback"]))
        report = sync_connector(engine=engine, connector=connector)
        connector.close()
    finally:
        bouncer.close()
    assert report.fatal is not None and "does not follow redirects" in report.fatal
    assert "not in allowed_hosts" not in report.fatal
    assert "set url in [connectors.ml] to the address the server redirects to" in report.fatal
    assert mlflow.requests == []


class Plugin(Connector):
    """A third-party connector from before `egress`: its own __init__ does not take it."""

    type = "plugin"

    class Options(BaseModel):
        model_config = {"extra": "forbid"}
        url: str
        backup_url: str | None = None

    def __init__(self, *, name: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(name=name, options=options)

    def read_prompts(self) -> Iterator[Any]:
        return iter(())

    def read_logs(self, *, cursor: str | None) -> Iterator[Any]:
        yield Checkpoint("done")


def test_plugin_urls_are_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "load", lambda _type: Plugin)
    egress = Egress.parse(["store.example.com"])
    built = registry.create("p", ConnectorConfig(type="plugin", url="https://store.example.com"), egress=egress)
    assert isinstance(built, Plugin)
    with pytest.raises(HostNotAllowed) as info:
        registry.create("p", ConnectorConfig(type="plugin", url="https://store.example.com",
                                             backup_url="http://10.0.0.9/"), egress=egress)
    assert info.value.where == "[connectors.p] backup_url"


def test_api_answers_a_refused_connector_with_4xx(tmp_path: Path, engine: Engine, trap: Trap) -> None:
    settings = settings_for(tmp_path, trap.url, ["mlflow.internal"])
    with session_scope(engine) as session:
        _, token = store.create_token(session=session, name="eng", role="engineer", actor="test")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, engine), raise_server_exceptions=False) as client:
        synced = client.post("/connectors/sync", json={}, headers=headers)
        tested = client.post("/connectors/ml/test", headers=headers)
    assert synced.status_code == 400, synced.text
    assert synced.json()["error"]["code"] == "host_not_allowed"
    assert synced.json()["error"]["where"] == "[connectors.ml] url"
    assert tested.status_code == 200 and tested.json()["ok"] is False
    assert "not in allowed_hosts" in tested.json()["error"]
    assert trap.untouched()


# -- webhooks ------------------------------------------------------------------------------------
def hooked(tmp_path: Path, url: str, allowed: list[str] | None) -> Settings:
    base = Settings(home=tmp_path / "home", allowed_hosts=allowed)
    # model_copy skips validation, as a settings object built in code could: delivery checks again
    return base.model_copy(update={"webhooks": [WebhookConfig(url=url, backoff_base_s=0.0, max_retries=1)]})


def test_webhook_to_a_disallowed_host_is_not_sent(tmp_path: Path, engine: Engine, trap: Trap) -> None:
    settings = hooked(tmp_path, f"{trap.url}/services/SECRET", ["hooks.example.com"])
    [delivery] = asyncio.run(webhooks.notify(engine=engine, settings=settings, event="run.failed",
                                             data={"run_id": 1, "summary": "x"}))
    assert not delivery.ok and delivery.attempts == [{"attempt": 0, "error": "host_not_allowed"}]
    assert trap.untouched()


def test_webhook_redirects_are_not_followed(tmp_path: Path, engine: Engine, trap: Trap) -> None:
    bouncer = FakeMlflow(redirect_to=trap.url)
    try:
        settings = hooked(tmp_path, f"{bouncer.url}/hook", [f"127.0.0.1:{bouncer.port}"])
        [delivery] = asyncio.run(webhooks.notify(engine=engine, settings=settings, event="run.failed",
                                                 data={"run_id": 1}))
    finally:
        bouncer.close()
    assert not delivery.ok and delivery.attempts == [{"attempt": 1, "status": 302}]
    assert bouncer.requests == ["POST /hook"] and trap.untouched()
