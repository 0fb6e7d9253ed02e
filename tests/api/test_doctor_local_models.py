"""The doctor's bundled-model checks: a stranger on a model's port is a problem; --start-models
really starts each model once and stops it."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trimloop.api.doctor import setup
from trimloop.core.local_models import answers, base_url
from trimloop.core.settings import LocalModelSettings, Settings

from tests.conftest import _two_free_ports


@pytest.fixture
def stranger() -> Iterator[int]:
    """Something that answers any GET with 200 (not a trimloop model server)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b'{"data": [{"id": "smollm2-135m"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


def test_a_stranger_on_a_used_models_port_is_a_problem(stranger: int, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", local_models=LocalModelSettings(port=stranger))
    found = {f.code: f for f in setup.local_models(settings, {"local/smollm2-135m": ["candidate of triage"]},
                                                   start=False)}
    taken = found["local_models.port_taken"]
    assert taken.level == "problem" and f"127.0.0.1:{stranger} answers, but not as the server" in taken.message
    assert "TRIMLOOP_LOCAL_MODELS__PORT" in taken.fix and "(candidate of triage)" in taken.message
    unused = setup.local_models(settings, {}, start=False)
    assert [f.level for f in unused if f.code == "local_models.port_taken"] == ["warning"]  # no prompt uses it


@pytest.mark.integration
def test_start_models_starts_each_bundled_model_once_and_stops_it(tmp_path: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: pip install -e '.[dev]'")
    settings = Settings(home=tmp_path / "home", local_models=LocalModelSettings(port=_two_free_ports()))
    found = setup.local_models(settings, {"local/smollm2-135m": ["candidate of triage"]}, start=True)
    started = {f.message.split(":")[0]: f for f in found if f.code == "local_models.started"}
    assert set(started) == {"local/smollm2-135m", "local/gemma3-270m"}, [f.message for f in found]
    assert all(f.level == "ok" and f.data["seconds"] > 0 for f in started.values())
    assert not any(answers(base_url(settings, m)) for m in started)  # stopped again
