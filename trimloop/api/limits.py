"""What one request may hold of the server: a turn at the database, and a bounded request body.

- `Turns`: at most `api.concurrent_requests` requests hold a database session at once; the rest
  wait for a turn without a thread or a connection (an asyncio semaphore), at most
  `api.queue_timeout_s`, then 503 `server_busy` with Retry-After. A request session used to take
  a pooled connection in one worker thread and keep it while queued for the next, so 60 clients
  and 40 threads against 15 connections deadlocked until the pool's 30 s timeout (500s, and
  `/health` queued behind them). Each turn needs at most 2 connections (the session and the
  token's last-use write); the pool has 2 × 16 + 8 (`core.db.POOL_SIZE`).
- `BodyLimit` (ASGI middleware): a request body is capped per app (API: `api.max_body_bytes`,
  web UI forms: `api.max_form_bytes`): a larger Content-Length is answered 413 before anything is
  read, a body that grows past the cap while streaming is cut off with 413, a pause longer than
  `api.body_timeout_s` between chunks is 408. An API request with a body has its token checked
  before the body is read (FastAPI reads and parses bodies before it resolves dependencies).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trimloop.api import errors
from trimloop.api.auth import authenticate, bearer
from trimloop.api.errors import ApiError
from trimloop.core.errors import TrimloopError

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Turns:
    """At most `slots` requests at the database at once; a wait longer than `timeout_s` is 503."""

    def __init__(self, slots: int, timeout_s: float):
        self.slots, self.timeout_s = slots, timeout_s
        # one semaphore per event loop: tests run apps in several loops, one after another
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        semaphore = self._by_loop.get(loop)
        if semaphore is None:
            semaphore = self._by_loop[loop] = asyncio.Semaphore(self.slots)
        try:
            await asyncio.wait_for(semaphore.acquire(), self.timeout_s)
        except TimeoutError:
            raise ApiError(503, "server_busy", f"the server had {self.slots} requests at the database for "
                           f"{self.timeout_s:g} s and this one waited too long for its turn",
                           hint="retry after Retry-After seconds; raise api.concurrent_requests (≤ 16) "
                           "or run more `trimloop serve` processes", headers={"Retry-After": "2"}) from None
        try:
            yield
        finally:
            semaphore.release()


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than this server accepts ({limit:,} bytes)")
        self.limit = limit


class BodyTooSlow(HTTPException):
    def __init__(self, pause_s: float):
        super().__init__(408, f"the request body stalled for more than {pause_s:g} s")


class BodyLimit:
    """ASGI middleware: cap request bodies while they stream, check the token before an API body."""

    def __init__(self, app: ASGIApp, *, api_bytes: int, form_bytes: int, pause_s: float):
        self.app, self.api_bytes, self.form_bytes, self.pause_s = app, api_bytes, form_bytes, pause_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        ui = path == "/ui" or path.startswith("/ui/")
        limit = self.form_bytes if ui else self.api_bytes
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            refusal = BodyTooLarge(limit) if declared.isdigit() else HTTPException(400, "invalid Content-Length")
            await self._refuse(scope, receive, send, refusal.status_code, refusal.detail, limit)
            return
        has_body = (declared not in (None, "0")) or "chunked" in headers.get("transfer-encoding", "").lower()
        if has_body and not ui and scope["method"] in BODY_METHODS:
            refusal = await _token_refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        received, complete = 0, False

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # after the body only a disconnect comes, whenever it comes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.pause_s)
            except TimeoutError:
                raise BodyTooSlow(self.pause_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited if has_body else receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str, limit: int) -> None:
        response = errors.error_response(
            status, "body_too_large" if status == 413 else "invalid_request", message,
            f"{scope['method']} {scope['path']}", f"send at most {limit:,} bytes" if status == 413 else None,
            {"Connection": "close"})
        await response(scope, receive, send)


async def _token_refusal(scope: Scope) -> errors.JSONResponse | None:
    """The 401 or 429 (or 503) an API request with a body gets before its body is read, else None.
    The role is checked later, by the route's own dependency, once the route is known."""
    request = Request(scope)
    app = scope["app"]
    credentials: HTTPAuthorizationCredentials | None = await bearer(request)
    engine: Engine = app.state.engine

    def check() -> None:
        with Session(engine) as session:
            authenticate(request, session, credentials)

    try:
        async with app.state.turns.turn():
            await anyio.to_thread.run_sync(check)
    except TrimloopError as exc:
        return errors.response_for(exc)
    return None
