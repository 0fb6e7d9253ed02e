"""Bearer-token authentication, roles, the per-client limit on failed logins, and the session.

Roles grant permissions; every role reads, and the rest are split so that no one both approves
and deploys unless they are an admin:

    viewer    read                         (finance: reports)
    reviewer  read, review                 (approve, reject)
    engineer  read, operate                (runs, syncs, connectors, deploy, promote, rollback)
    admin     read, review, operate, admin (tokens)
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from trimloop.api.errors import ApiError
from trimloop.core.settings import Settings
from trimloop.core.store import Superseded, verify_token
from trimloop.core.tables import ApiToken, as_utc, utcnow

PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "reviewer": frozenset({"read", "review"}),
    "engineer": frozenset({"read", "operate"}),
    "admin": frozenset({"read", "review", "operate", "admin"}),
}

bearer = HTTPBearer(auto_error=False, description="an API token: `trimloop tokens create --role ROLE --name NAME`")


async def database_turn(request: Request) -> AsyncIterator[None]:
    """Wait (without a thread) for one of the app's turns at the database; see trimloop.api.limits."""
    turns = getattr(request.app.state, "turns", None)
    if turns is None:
        yield
        return
    async with turns.turn():
        yield


def get_db(request: Request, _: Annotated[None, Depends(database_turn, scope="function")]) -> Iterator[Session]:
    """A session per request, opened in a turn (see database_turn): committed before the response is
    sent, rolled back on error."""
    engine: Engine = request.app.state.engine
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except Superseded:  # the new `superseded` status is the point of that error: keep it
            session.commit()
            raise
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_db, scope="function")]


class LoginLimiter:
    """At most `limit` failed logins per client per minute; then 429 until the window clears."""

    def __init__(self, limit: int, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self.failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, client: str) -> deque[float]:
        times, now = self.failures[client], time.monotonic()
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def check(self, client: str) -> None:
        times = self._recent(client)
        if len(times) >= self.limit:
            wait = max(1, int(self.window_s - (time.monotonic() - times[0])) + 1)
            raise ApiError(429, "too_many_failed_logins",
                           f"too many failed logins from {client}", where="Authorization header",
                           hint=f"wait {wait} s, then use a valid token", headers={"Retry-After": str(wait)})

    def fail(self, client: str) -> None:
        self._recent(client).append(time.monotonic())
        if len(self.failures) > 10_000:  # forget the quietest clients
            for key in [k for k, v in self.failures.items() if not v][:5_000]:
                del self.failures[key]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name (the audit's actor), its role and id."""

    name: str
    role: str
    token_id: int

    @property
    def actor(self) -> str:
        return f"{self.name} ({self.role})"


def authenticate(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    client = request.client.host if request.client else "unknown"
    limiter: LoginLimiter = request.app.state.login_limiter
    limiter.check(client)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "this endpoint needs an API token",
                       where="Authorization header", headers={"WWW-Authenticate": "Bearer"},
                       hint="send 'Authorization: Bearer <token>'; an admin creates one with "
                       "`trimloop tokens create --role viewer --name NAME`")
    token = verify_token(session=session, token=credentials.credentials)
    if token is None:
        limiter.fail(client)
        raise ApiError(401, "unauthorized", "unknown, revoked or expired API token", where="Authorization header",
                       headers={"WWW-Authenticate": "Bearer"},
                       hint="check the token (it is shown once at creation) or ask an admin for a new one")
    now = utcnow()
    last = token.last_used_at
    if last is None or (now - as_utc(last)).total_seconds() > 60:
        # At most once a minute, in its own short transaction: written through the request's
        # session, SQLite's write lock would be held until the request ends (a slow report
        # would then block every writer, background runs included).
        with Session(request.app.state.engine) as own:
            own.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
            own.commit()
    return Principal(name=token.name, role=token.role, token_id=token.id)  # type: ignore[arg-type]


def _requires(permission: str):  # type: ignore[no-untyped-def]
    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if permission not in PERMISSIONS.get(principal.role, frozenset()):
            allowed = [r for r, p in PERMISSIONS.items() if permission in p]
            raise ApiError(403, "forbidden", f"role {principal.role!r} may not {permission}",
                           where=f"token {principal.name!r}",
                           hint=f"use a token with role {' or '.join(allowed)}")
        return principal

    check.__name__ = f"requires_{permission}"
    check.permission = permission  # type: ignore[attr-defined]
    return check


Reader = Annotated[Principal, Depends(_requires("read"))]
Reviewer = Annotated[Principal, Depends(_requires("review"))]
Operator = Annotated[Principal, Depends(_requires("operate"))]
Admin = Annotated[Principal, Depends(_requires("admin"))]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _engine(request: Request) -> Engine:
    return request.app.state.engine


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]
