"""Credentials in a connector's URL (user info, query) never reach a message: not the sync
report, not a connection test, not `trimloop sync`, not the audit log every viewer reads."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from trimloop.api.app import create_app
from trimloop.api.cli import _register, app
from trimloop.connectors.base import Problem
from trimloop.core.errors import ConnectorError
from trimloop.testing.fake_openai import free_port
from trimloop.core.redact import redact_url, redact_urls
from trimloop.core.settings import Settings

SECRETS = ("S3CRET", "T0KEN", "Us3rN4me")
_register()


@pytest.fixture
def failing_server():
    """Answers every request 500, echoing the path and query it was asked for (as some do)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = f"internal error at {self.path}".encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


@pytest.fixture
def leaky(failing_server, monkeypatch):
    """Two connectors whose URLs carry credentials: one answers 500, one is not listening."""
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk")
    return {
        "answers500": {"type": "mlflow", "url": f"http://Us3rN4me:S3CRET@127.0.0.1:{failing_server}/?token=T0KEN"},
        "down": {"type": "langfuse", "url": f"http://Us3rN4me:S3CRET@127.0.0.1:{free_port()}/x?token=T0KEN#T0KEN"},
    }


def clean(text):
    assert not [s for s in SECRETS if s in text], text
    return text


def test_the_api_and_its_audit_log_never_repeat_url_credentials(settings, engine, headers, leaky):
    settings = Settings(home=settings.home, connectors=leaky, api={"failed_logins_per_minute": 1000})
    with TestClient(create_app(settings, engine)) as client:
        reports = client.post("/connectors/sync", json={"connectors": list(leaky)}, headers=headers["engineer"])
        assert reports.status_code == 200
        fatal = {r["connector"]: r["fatal"] for r in reports.json()}
        assert "answered HTTP 500" in clean(fatal["answers500"]) and "127.0.0.1" in fatal["answers500"]
        assert "cannot reach" in clean(fatal["down"]) and "***@127.0.0.1" in fatal["down"]
        for name in leaky:
            tested = client.post(f"/connectors/{name}/test", headers=headers["engineer"]).json()
            assert tested["ok"] is False and "127.0.0.1" in clean(tested["error"])
        audit = client.get("/audit", headers=headers["viewer"])
        assert "connectors.sync" in clean(audit.text)


def test_trimloop_sync_prints_no_url_credentials(tmp_path, home_db, leaky):
    assert CliRunner().invoke(app, ["init"]).exit_code == 0
    lines = [f'[connectors.{name}]\n' + "".join(f'{k} = {json.dumps(v)}\n' for k, v in config.items())
             for name, config in leaky.items()]
    (tmp_path / "trimloop.toml").write_text("\n".join(lines))
    result = CliRunner().invoke(app, ["sync"], env={"COLUMNS": "300"})
    assert result.exit_code != 0
    assert "answered HTTP 500" in clean(result.output) and "cannot reach" in result.output


def test_redact_url_keeps_where_and_drops_credentials():
    assert redact_url("https://u:p@host:8443/api/x?token=t#frag") == "https://***@host:8443/api/x?***#***"
    assert redact_url("http://host/path") == "http://host/path"
    assert redact_urls("GET http://a:b@h/?k=v: refused (see http://h2/ok)") == \
        "GET http://***@h/?***: refused (see http://h2/ok)"
    error = ConnectorError("down", where="GET http://a:S3CRET@h/?token=T0KEN", hint="check http://h/?token=T0KEN")
    assert clean(str(error)) and clean(json.dumps(error.to_dict()))
    assert clean(str(Problem("http://Us3rN4me:S3CRET@h/ prompt 'p'", "bad", hint="x")))
