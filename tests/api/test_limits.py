"""What a request may hold of the server: turns at the database under a burst, body caps, early auth."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from tests.api.conftest import synced
from trimloop.api.app import create_app
from trimloop.core.settings import Settings


def _raw_scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "scheme": "http"}


async def _call(app: Any, method: str, path: str, headers: dict[str, str], chunks: list[bytes],
                *, then: str = "end") -> tuple[int, dict[str, str], int]:
    """Send a request straight to the ASGI app: (status, headers, how many body chunks it read).
    `then`: after the chunks, "end" the body, "disconnect" like a client that went away, or "stall"."""
    reads, sent = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads <= len(chunks):
            more = reads < len(chunks) or then != "end"
            return {"type": "http.request", "body": chunks[reads - 1], "more_body": more}
        if then == "disconnect":
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # the body ended; only a disconnect could come now
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_raw_scope(method, path, headers), receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, min(reads, len(chunks))


async def test_a_burst_of_100_clients_gets_no_500_and_health_answers_at_once(settings, engine, headers):
    """100 concurrent GET /prompts used to deadlock the pool (15) against the threads (40) until the
    pool's 30 s timeout: 500s, and /health queued behind them."""
    synced(engine, settings)
    app = create_app(settings, engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as client:
        burst = [asyncio.create_task(client.get("/prompts", headers=headers["viewer"])) for _ in range(100)]
        health_waits = []
        while not all(task.done() for task in burst) and len(health_waits) < 20:
            began = time.monotonic()
            assert (await client.get("/health")).status_code == 200
            health_waits.append(time.monotonic() - began)
            await asyncio.sleep(0.05)
        responses = await asyncio.gather(*burst)
    statuses = [r.status_code for r in responses]
    assert 500 not in statuses
    assert set(statuses) <= {200, 503}, statuses
    assert all("retry-after" in r.headers for r in responses if r.status_code == 503)
    assert statuses.count(200) >= 50, statuses  # turns are taken in order, so most get through
    assert health_waits and max(health_waits) < 5.0, health_waits  # was 29.6 s; generous for a loaded machine


async def test_a_pool_timeout_is_503_database_busy_with_retry_after(settings, engine, headers):
    synced(engine, settings)
    tiny = create_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=0.2,
                         connect_args={"check_same_thread": False} if engine.dialect.name == "sqlite" else {})
    if engine.dialect.name == "sqlite":
        event.listen(tiny, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout=30000"))
    held = tiny.connect()  # the only connection: every checkout times out
    try:
        app = create_app(settings, tiny)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            response = await client.get("/prompts", headers=headers["viewer"])
    finally:
        held.close()
        tiny.dispose()
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_busy"
    assert response.headers["retry-after"] == "2"


async def test_a_request_that_waits_too_long_for_a_turn_is_503_with_retry_after(settings, engine, headers):
    tight = settings.model_copy(update={"api": settings.api.model_copy(
        update={"concurrent_requests": 1, "queue_timeout_s": 0.2})})
    app = create_app(tight, engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        async with app.state.turns.turn():  # someone holds the only turn
            busy = await client.get("/prompts", headers=headers["viewer"])
            health = await client.get("/health")
        after = await client.get("/prompts", headers=headers["viewer"])
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "server_busy"
    assert busy.headers["retry-after"] == "2"
    assert health.status_code == 200 and after.status_code == 200


async def test_a_body_over_the_cap_is_413_before_any_of_it_is_read(settings, engine, headers):
    app = create_app(settings, engine)
    declared = {"Content-Type": "application/json", "Content-Length": str(100 * 1024 * 1024)}
    status, _, reads = await _call(app, "POST", "/runs", {**declared, **headers["engineer"]}, [b"{" * 1024])
    assert (status, reads) == (413, 0)
    status, _, reads = await _call(app, "POST", "/ui/login", {"Content-Type": "application/x-www-form-urlencoded",
                                                              "Content-Length": "64001"}, [b"a" * 1024])
    assert (status, reads) == (413, 0)


async def test_a_streamed_body_is_cut_off_at_the_cap(settings: Settings, engine: Engine, headers):
    small = settings.model_copy(update={"api": settings.api.model_copy(update={"max_body_bytes": 1024 * 1024})})
    app = create_app(small, engine)
    chunks = [b" " * 65536] * 1000  # 64 MB, no Content-Length (chunked)
    status, _, reads = await _call(app, "POST", "/runs", {"Content-Type": "application/json",
                                                          "Transfer-Encoding": "chunked", **headers["engineer"]}, chunks)
    assert status == 413
    assert reads <= 17  # 1 MB in 64 KB chunks, and the one that crossed it
    form = [b"a" * 16384] * 100  # a UI form past 64 KB
    status, _, reads = await _call(app, "POST", "/ui/login", {"Content-Type": "application/x-www-form-urlencoded",
                                                              "Transfer-Encoding": "chunked"}, form)
    assert status == 413 and reads <= 4


async def test_a_body_without_a_valid_token_is_refused_before_it_is_read(settings, engine, headers):
    app = create_app(settings, engine)
    body = [b'{"prompt_id": 1, ' + b" " * 65536] * 16  # 1 MB, under the cap
    length = str(sum(map(len, body)))
    for extra in ({}, {"Authorization": "Bearer tl_not_a_token"}):
        status, answer, reads = await _call(app, "POST", "/datasets/import",
                                            {"Content-Type": "application/json", "Content-Length": length, **extra}, body)
        assert (status, reads) == (401, 0)
        assert answer["www-authenticate"] == "Bearer"
    status, _, reads = await _call(app, "POST", "/runs", {"Content-Type": "application/json", "Content-Length": "2",
                                                          **headers["engineer"]}, [b"{}"])
    assert (status, reads) == (422, 1)  # with a good token the body is read and validated


async def test_a_client_that_goes_away_mid_body_is_an_info_line_not_a_traceback(settings, engine, caplog):
    app = create_app(settings, engine)
    with caplog.at_level(logging.INFO):
        status, _, _ = await _call(app, "POST", "/ui/login", {"Content-Type": "application/x-www-form-urlencoded",
                                                              "Content-Length": "1000"}, [b"token=abc"],
                                   then="disconnect")
    assert status == 400
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert any("went away" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


async def test_a_body_that_stalls_is_408_and_frees_the_request(settings, engine, headers):
    impatient = settings.model_copy(update={"api": settings.api.model_copy(update={"body_timeout_s": 0.3})})
    app = create_app(impatient, engine)
    began = time.monotonic()
    status, _, reads = await _call(app, "POST", "/runs", {"Content-Type": "application/json", "Content-Length": "100",
                                                          **headers["engineer"]}, [b'{"prompt_id": '], then="stall")
    assert (status, reads) == (408, 1)
    assert time.monotonic() - began < 30  # the client never sends the rest; the server stops waiting
