"""A bundled model's port is adopted only if the server there is one this home started."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trimloop.core.catalog import resolve_model
from trimloop.core.errors import LocalModelError
from trimloop.core.local_models import KEY_FILE, instance_key, start
from trimloop.core.providers import api_key_for
from trimloop.core.settings import LocalModelSettings, Settings


def _server(require_key: str | None, alias: str) -> tuple[ThreadingHTTPServer, int]:
    """An OpenAI-compatible /v1/models like llama_cpp.server's: with `require_key`, 401 to any other key."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if require_key is not None and self.headers.get("Authorization") != f"Bearer {require_key}":
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"object": "list", "data": [{"id": alias, "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _settings(home: Path, port: int) -> Settings:
    return Settings(home=home, local_models=LocalModelSettings(port=port))  # smollm2's offset is 0


@pytest.fixture
def impostor() -> Iterator[int]:
    """Any process that answers /v1/models, whatever the key: what used to be adopted."""
    server, port = _server(None, "smollm2-135m")
    yield port
    server.shutdown()
    server.server_close()


def test_a_port_answered_by_another_process_is_refused_not_adopted(home: Path, impostor: int):
    with pytest.raises(LocalModelError) as refused:
        start(_settings(home, impostor), "local/smollm2-135m")
    assert "not as the smollm2-135m server trimloop starts" in refused.value.message
    assert "TRIMLOOP_LOCAL_MODELS__PORT" in (refused.value.hint or "")


def test_a_server_holding_this_homes_key_and_serving_the_alias_is_adopted(home: Path):
    settings = _settings(home, 1)  # the port is set below, once the server has one
    key = instance_key(settings)
    for alias, adopted in (("gemma3-270m", False), ("smollm2-135m", True)):
        server, port = _server(key, alias)
        try:
            settings = _settings(home, port)
            if adopted:
                found = start(settings, "local/smollm2-135m")
                assert found.process is None and found.base_url == f"http://127.0.0.1:{port}"
            else:
                with pytest.raises(LocalModelError):
                    start(settings, "local/smollm2-135m")  # ours, but another model
        finally:
            server.shutdown()
            server.server_close()


def test_the_key_is_private_stable_and_sent_only_to_bundled_models(home: Path):
    settings = _settings(home, 8411)
    key = instance_key(settings)
    assert len(key) >= 40 and instance_key(settings) == key
    assert stat.S_IMODE((home / KEY_FILE).stat().st_mode) == 0o600
    bundled = resolve_model(settings, "local/smollm2-135m")
    assert api_key_for(bundled) == key and key not in repr(bundled)
    other = Settings(home=home, models={"mine/model": {"api_base": "http://127.0.0.1:9/v1"}})
    assert api_key_for(resolve_model(other, "mine/model")) is None
