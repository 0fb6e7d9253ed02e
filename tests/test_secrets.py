"""Secrets never appear: plant fake keys in the variables a model's `api_key_env` and connectors'
token options name, drive every code path that uses them — gateway calls that succeed and fail
(a server that echoes the key back in its error), connector syncs against a server that echoes
the token and one that is down, the CLI (`models list`, `call`, `sync`), the REST API and the UI's
error answers — then search every output for the keys: stdout/stderr, log records, error
messages, HTTP bodies, and every column of every table in the database."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select

from trimloop.testing.fake_openai import free_port, running

KEY = f"sk-test-PLANTED-{uuid.uuid4().hex}"
TOKEN = f"mlflow-PLANTED-{uuid.uuid4().hex}"
PHOENIX_KEY = f"phx-PLANTED-{uuid.uuid4().hex}"
SECRETS = (KEY, TOKEN, PHOENIX_KEY)
PROMPT = """---
model: fake/m
params: {temperature: 0, max_tokens: 4}
labels: [production]
---
user:
Ticket: {{ticket}}
"""


class EchoHandler(BaseHTTPRequestHandler):
    """A careless server: refuses every request and quotes the credentials it was sent."""

    seen: list[str] = []

    def _refuse(self) -> None:
        auth = self.headers.get("Authorization", "")
        EchoHandler.seen.append(auth)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {auth}"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[str]:
    with running() as url:
        yield url


def _write_config(tmp_path: Path, fake_openai: str, echo: str) -> None:
    store = tmp_path / "store"
    (store / "prompts").mkdir(parents=True)
    (store / "prompts" / "triage.md").write_text(PROMPT)
    down = f"http://127.0.0.1:{free_port()}"
    Path(os.environ["TRIMLOOP_CONFIG"]).write_text(f"""
[gateway]
max_retries = 1
backoff_base_s = 0.01
timeout_s = 10

[models."fake/m"]
api_base = "{fake_openai}/v1"
api_key_env = "PLANTED_OPENAI_KEY"
input_per_mtok = 1
output_per_mtok = 2

[models."echo/m"]
api_base = "{echo}/v1"
api_key_env = "PLANTED_OPENAI_KEY"
input_per_mtok = 1
output_per_mtok = 2

[connectors.local]
type = "files"
path = "{store}"

[connectors.ml]
type = "mlflow"
url = "{echo}"
token_env = "PLANTED_MLFLOW_TOKEN"

[connectors.px]
type = "phoenix"
url = "{down}"
api_key_env = "PLANTED_PHOENIX_KEY"
""")


def _cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-c", "from trimloop.api.cli import main; main()", *args],
                          capture_output=True, text=True, env=dict(os.environ, COLUMNS="300"), timeout=300)
    return f"$ trimloop {' '.join(args)} (exit {done.returncode})\n{done.stdout}\n{done.stderr}"


def _database_text(engine: object) -> str:
    """Every value of every column of every table, as text."""
    meta = MetaData()
    meta.reflect(bind=engine)  # type: ignore[arg-type]
    out = []
    with engine.connect() as conn:  # type: ignore[attr-defined]
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                out.append(f"{table.name}: " + " | ".join(str(v) for v in row))
    return "\n".join(out)


def test_planted_keys_appear_nowhere(tmp_path: Path, fake_openai: str, echo_server: str, home_db: str,
                                     monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                     capfd: pytest.CaptureFixture[str]) -> None:
    from trimloop.api.app import create_app
    from trimloop.connectors.sync import sync
    from trimloop.core import store
    from trimloop.core.db import make_engine, session_scope, upgrade
    from trimloop.core.errors import GatewayError
    from trimloop.core.gateway import Gateway
    from trimloop.core.settings import load_settings

    monkeypatch.setenv("PLANTED_OPENAI_KEY", KEY)
    monkeypatch.setenv("PLANTED_MLFLOW_TOKEN", TOKEN)
    monkeypatch.setenv("PLANTED_PHOENIX_KEY", PHOENIX_KEY)
    caplog.set_level(logging.DEBUG)
    EchoHandler.seen.clear()
    _write_config(tmp_path, fake_openai, echo_server)
    outputs: dict[str, str] = {}

    # the CLI, as a user runs it
    outputs["cli"] = "\n".join([_cli("models", "list"), _cli("call", "fake/m", "hello"),
                                _cli("call", "echo/m", "hello"), _cli("sync")])
    assert "echo: hello" in outputs["cli"] and "HTTP 401" in outputs["cli"], outputs["cli"]

    # the same paths in process: gateway, connectors, API, UI
    settings = load_settings()
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)

    async def calls() -> list[str]:
        async with Gateway(settings, engine=engine, cache=False) as gateway:
            ok = await gateway.call("fake/m", messages=[{"role": "user", "content": "hi"}], params={"max_tokens": 4})
            try:
                await gateway.call("echo/m", messages=[{"role": "user", "content": "hi"}])
            except GatewayError as exc:
                return [ok.output, str(exc), json.dumps(exc.to_dict())]
        raise AssertionError("the echo server accepted a call")

    outputs["gateway"] = "\n".join(asyncio.run(calls()))
    outputs["sync"] = json.dumps([r.to_dict() for r in sync(engine=engine, settings=settings)])
    with session_scope(engine) as session:
        _, admin = store.create_token(session=session, name="admin", role="admin", actor="test")
    auth = {"Authorization": f"Bearer {admin}"}
    with TestClient(create_app(settings, engine), raise_server_exceptions=False) as client:
        answers = [client.get("/connectors", headers=auth), client.post("/connectors/ml/test", headers=auth),
                   client.post("/connectors/px/test", headers=auth), client.post("/connectors/sync", json={}, headers=auth),
                   client.get("/prompts", headers=auth), client.get("/audit", headers=auth),
                   client.get("/suggestions", headers={"Authorization": f"Bearer {KEY}"}),  # a key as a token
                   client.get("/ui/login")]
        csrf = re.search(r'name="csrf" value="([^"]+)"', answers[-1].text)
        assert csrf is not None
        answers.append(client.post("/ui/login", data={"token": KEY, "csrf": csrf.group(1), "next": "/ui/"}))
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 200, 200, 401, 200, 401]
    outputs["api"] = "\n".join(f"{a.request.method} {a.request.url}: {a.text}" for a in answers)
    assert "HTTP 401" in outputs["api"] and "cannot reach Phoenix" in outputs["api"], outputs["api"]

    # the keys really were used: sent to the servers
    assert f"Bearer {KEY}" in EchoHandler.seen and f"Bearer {TOKEN}" in EchoHandler.seen

    outputs["database"] = _database_text(engine)
    engine.dispose()
    captured = capfd.readouterr()
    outputs["stdout/stderr"] = captured.out + captured.err
    outputs["logs"] = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''} {r.args!r}"
                                for r in caplog.records)
    assert "triage" in outputs["database"]
    for where, text in outputs.items():
        for secret in SECRETS:
            at = text.find(secret)
            assert at < 0, f"a planted secret appears in the {where}: …{text[max(0, at - 300):at + 100]}…"
