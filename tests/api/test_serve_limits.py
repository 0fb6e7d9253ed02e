"""`trimloop serve`'s uvicorn limits: a slow client cannot hold a connection by trickling its headers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from trimloop.api.cli.serve import server_config
from trimloop.testing.fake_openai import free_port
from trimloop.core.settings import Settings


async def _app(scope, receive, send):  # type: ignore[no-untyped-def]
    """The smallest ASGI app: 200 "ok" (the limits under test are uvicorn's, below any app)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[str, int]]:  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path / "home", api={"header_timeout_s": 0.5})
    port = free_port()
    server = uvicorn.Server(server_config(_app, settings, host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=20)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes) -> float | None:
    """Send `trickle` every 0.2 s; the seconds until the server closed the connection, or None."""
    began = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - began < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - began
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - began
        try:
            sock.sendall(trickle)
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - began
    return None


def test_headers_sent_a_byte_at_a_time_lose_the_connection(served):
    host, port = served
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        closed = _closed_within(sock, 10.0, b"X")  # each byte used to restart uvicorn's keep-alive timer
    assert closed is not None and closed < 8.0, closed  # deadline 0.5 s; generous for a loaded machine


def test_a_prompt_client_is_served_and_kept_alive_across_requests(served):
    host, port = served
    with httpx.Client(base_url=f"http://{host}:{port}") as client:
        first = client.get("/")
        time.sleep(1.0)  # past the header deadline while idle between requests: keep-alive (5 s) decides
        second = client.get("/")
    assert first.text == second.text == "ok"

