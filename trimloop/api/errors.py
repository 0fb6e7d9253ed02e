"""One error body everywhere: `{"error": {"code", "message", "where", "hint"}}`.

TrimloopError subclasses map to statuses (NotFound 404, Conflict 409, other UserError 400,
ProviderError 502); request validation errors are 422 and name the field; a busy database (a
lock or the connection pool's timeout) is 503 with Retry-After; a client that went away is an info
line; anything unexpected is a 500 that shows no internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from trimloop.core.errors import Busy, Conflict, NotFound, ProviderError, TrimloopError, UserError

log = logging.getLogger("trimloop.api")


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["no suggestion with id 42"])
    where: str | None = Field(default=None, examples=["suggestions"])
    hint: str | None = Field(default=None, examples=["list them: GET /suggestions?status=pending"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(TrimloopError):
    """An HTTP-level refusal (no token, wrong role, too many attempts) with its status."""

    def __init__(self, status: int, code: str, message: str, *, where: str | None = None,
                 hint: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message, where=where, hint=hint)
        self.status, self.code, self.headers = status, code, headers


def error_response(status: int, code: str, message: str, where: str | None = None, hint: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "where": where, "hint": hint}}
    return JSONResponse(body, status_code=status, headers=headers)


_response = error_response


def response_for(exc: TrimloopError) -> JSONResponse:
    """The error body and status of a TrimloopError (and an ApiError's headers)."""
    return error_response(status_of(exc), exc.code, exc.message, exc.where, exc.hint, getattr(exc, "headers", None))


def status_of(exc: TrimloopError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, Busy):
        return 503
    if isinstance(exc, UserError):
        return 400
    if isinstance(exc, ProviderError):
        return 502
    return 500


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        return f"{parts[0]} field '{'.'.join(parts[1:]) or parts[0]}'"
    return ".".join(parts)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the one error body."""

    @app.exception_handler(TrimloopError)
    async def _trimloop(_: Request, exc: TrimloopError) -> JSONResponse:
        return response_for(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":  # loc is ("body", character offset), not a field
            detail = (first.get("ctx") or {}).get("error", "")
            return _response(422, "invalid_request", f"the body is not valid JSON at character "
                             f"{first['loc'][-1]}: {detail}".rstrip(": "), "body",
                             "send a JSON object with Content-Type: application/json")
        where = _field(tuple(first.get("loc", ())))
        message = "; ".join(f"{_field(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in errors[:5])
        return _response(422, "invalid_request", message or "invalid request", where,
                         "fix the named field; the OpenAPI document at /openapi.json shows every field")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden",
                 408: "body_too_slow", 413: "body_too_large"}
        hint = "the routes are listed in /openapi.json (with a token) and docs/api.md" if exc.status_code in (404, 405) else None
        if exc.status_code in (408, 413):
            hint = "send the whole body at once" if exc.status_code == 408 else "send a smaller body"
        return _response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                         f"{request.method} {request.url.path}", hint, getattr(exc, "headers", None))

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        return _response(422, "invalid_request", "a number in the request is out of range",
                         f"{request.method} {request.url.path}", "ids and counts fit in 64 bits")

    @app.exception_handler(DataError)
    async def _unfit(request: Request, exc: DataError) -> JSONResponse:
        # PostgreSQL checks what SQLite stores as given: an id past its INTEGER column (2^31 - 1),
        # an offset past BIGINT, a text longer than its VARCHAR(n). Such a value came with the request.
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        return _response(422, "invalid_request", f"a value in the request does not fit the database: {reason}",
                         f"{request.method} {request.url.path}",
                         "ids are below 2147483648, offsets below 2^63; shorten long names")

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        if not _busy(exc):
            return await _unexpected(request, exc)
        log.warning("database busy on %s %s: %s", request.method, request.url.path, exc.orig)
        return _response(503, "database_busy", "the database was busy with another write and this request "
                         "timed out waiting for it", f"{request.method} {request.url.path}",
                         "retry after a moment (Retry-After); with many writers, use PostgreSQL",
                         {"Retry-After": "2"})

    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("no database connection free for %s %s: %s", request.method, request.url.path,
                    str(exc).splitlines()[0])
        return _response(503, "database_busy", "every database connection was in use and this request "
                         "timed out waiting for one", f"{request.method} {request.url.path}",
                         "retry after a moment (Retry-After); if it persists, lower api.concurrent_requests "
                         "or look for long-running requests", {"Retry-After": "2"})

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        # nobody reads this answer: the client closed the connection while sending its body
        log.info("client went away while sending %s %s", request.method, request.url.path)
        return _response(400, "client_disconnected", "the client closed the connection mid-request",
                         f"{request.method} {request.url.path}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _response(500, "internal", "an unexpected error happened on the server",
                         f"{request.method} {request.url.path}",
                         "retry; if it persists, report it with the server log's traceback")


def _busy(exc: OperationalError) -> bool:
    """SQLite's "database is locked", PostgreSQL's lock timeouts and deadlocks: retrying helps."""
    text = str(exc.orig).lower()
    return any(m in text for m in ("database is locked", "lock timeout", "deadlock detected",
                                   "could not obtain lock", "could not serialize"))


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no token, or an unknown, revoked or expired token"},
    403: {"model": ErrorBody, "description": "the token's role may not do this"},
    404: {"model": ErrorBody, "description": "an id that does not exist"},
    409: {"model": ErrorBody, "description": "the state changed under you (decided, deployed)"},
    422: {"model": ErrorBody, "description": "a field of the request is invalid; `where` names it"},
    408: {"model": ErrorBody, "description": "the request body stalled (`api.body_timeout_s`)"},
    413: {"model": ErrorBody, "description": "the request body is over the cap (`api.max_body_bytes`)"},
    429: {"model": ErrorBody, "description": "too many failed logins from this client"},
    400: {"model": ErrorBody, "description": "bad input the request schema cannot express"},
    502: {"model": ErrorBody, "description": "a prompt store or an LLM provider failed"},
    503: {"model": ErrorBody, "description": "the database or the server was busy; retry after `Retry-After` seconds"},
}
