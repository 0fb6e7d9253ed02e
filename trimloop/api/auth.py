"""Bearer-token authentication, roles, the per-client limit on failed logins, and the session.

Roles grant permissions; every role but `ingest` reads, and the rest are split so that no one
both approves and deploys unless they are an admin:

    viewer    read                         (finance: reports)
    reviewer  read, review                 (approve, reject)
    engineer  read, operate                (runs, syncs, connectors, deploy, promote, rollback)
    admin     read, review, operate, admin (tokens)
    ingest    ingest                       (POST /v1/traces only: an app's OTLP exporter holds it)
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

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
    "ingest": frozenset({"ingest"}),
}

T = TypeVar("T")
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
    """At most `limit` failed logins per client address per `window_s`; then 429 until the window
    clears. A token not seen to work before is checked and, when wrong, counted while that
    address's lock is held, so concurrent bad tokens cannot all be checked before the first is
    counted; tokens that worked skip the lock (a burst with a good token is not serialised after
    its first request). At most `max_clients` addresses are kept (least recently seen first,
    expired ones at once). Counts live in this process: N `serve` processes allow N × the limit."""

    STRIPES = 64

    def __init__(self, limit: int, window_s: float = 60.0, max_clients: int = 10_000):
        self.limit, self.window_s, self.max_clients = limit, window_s, max_clients
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.good: OrderedDict[str, None] = OrderedDict()  # sha256 of tokens that verified
        self.lock = threading.Lock()
        self.stripes = [threading.Lock() for _ in range(self.STRIPES)]

    def verify(self, client: str, token: str, check: Callable[[str], T | None]) -> T | None:
        """`check(token)` under the limit: 429 when `client` is over it, its failures counted."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        if digest in self.good:
            found = check(token)
            if found is None:  # revoked or expired since: a failure like any other
                self.good.pop(digest, None)
                self.fail(client)
            return found
        with self.stripes[hash(client) % self.STRIPES]:
            self.check(client)
            found = check(token)
            if found is None:
                self.fail(client)
            else:
                with self.lock:
                    self.good[digest] = None
                    while len(self.good) > 1024:
                        self.good.popitem(last=False)
            return found

    def check(self, client: str) -> None:
        """429 (with Retry-After) when `client` has `limit` failures in the window."""
        with self.lock:
            now = time.monotonic()
            times = self._recent(client, now)
            if len(times) >= self.limit:
                wait = max(1, int(self.window_s - (now - times[0])) + 1)
                raise ApiError(429, "too_many_failed_logins",
                               f"too many failed logins from {client}", where="Authorization header",
                               hint=f"wait {wait} s, then use a valid token", headers={"Retry-After": str(wait)})

    def fail(self, client: str) -> None:
        with self.lock:
            now = time.monotonic()
            self._recent(client, now).append(now)

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self.failures.pop(client, None) or deque()
        while times and now - times[0] > self.window_s:
            times.popleft()
        while self.failures:  # forget expired addresses, and the least recently seen past the cap
            oldest, old = next(iter(self.failures.items()))
            if len(self.failures) < self.max_clients and old and now - old[-1] <= self.window_s:
                break
            del self.failures[oldest]
        self.failures[client] = times  # now the most recently seen
        return times


def client_address(request: Request) -> str:
    """The address the limiter counts: the peer's, or — only when the peer is one of
    `api.trusted_proxies` — the nearest address in X-Forwarded-For that is not a trusted proxy.
    Without trusted proxies the header is ignored: anyone can write it."""
    peer = request.client.host if request.client else "unknown"
    trusted = request.app.state.settings.api.trusted_proxy_networks
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage where an address should be: count the proxy itself
    return peer


def _within(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


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
    client = client_address(request)
    limiter: LoginLimiter = request.app.state.login_limiter
    if credentials is None or credentials.scheme.lower() != "bearer":
        limiter.check(client)
        raise ApiError(401, "unauthorized", "this endpoint needs an API token",
                       where="Authorization header", headers={"WWW-Authenticate": "Bearer"},
                       hint="send 'Authorization: Bearer <token>'; an admin creates one with "
                       "`trimloop tokens create --role viewer --name NAME`")
    token = limiter.verify(client, credentials.credentials, lambda clear: verify_token(session=session, token=clear))
    if token is None:
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
Ingester = Annotated[Principal, Depends(_requires("ingest"))]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _engine(request: Request) -> Engine:
    return request.app.state.engine


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]
