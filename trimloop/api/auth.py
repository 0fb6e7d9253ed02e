"""Bearer-token authentication, roles, the per-client limit on failed logins (counted in the
database, so shared by every `serve` process), and the session.

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
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Float, case, delete, literal, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from trimloop.api.errors import ApiError
from trimloop.core.settings import Settings
from trimloop.core.store import Superseded, verify_token
from trimloop.core.tables import ApiToken, LoginFailure, as_utc, utcnow

PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "reviewer": frozenset({"read", "review"}),
    "engineer": frozenset({"read", "operate"}),
    "admin": frozenset({"read", "review", "operate", "admin"}),
    "ingest": frozenset({"ingest"}),
}

T = TypeVar("T")
FAILURES = LoginFailure.__table__  # type: ignore[attr-defined]
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
    """At most `limit` failed logins per client address in a fixed window of `window_s` that starts
    at the address's first failure; then 429 until the window ends. The counts live in the database
    (table `loginfailure`), so every `trimloop serve` process on it shares one limit. A token not
    seen to work before is counted *before* it is checked, in one conditional upsert that returns
    the new count, and the count is taken back when the token verifies: concurrent bad tokens, in
    any number of processes, cannot all be checked before the first is counted. Tokens seen to work
    skip the count: `good` caches their digests in this process (no counts; the token itself is
    still checked against the database on every request, so a revoked one fails and is counted), and
    within a process one address's unknown tokens are checked one at a time, so a burst with a new
    good token is counted once and taken back, not refused."""

    GOOD_CACHE = 1024
    STRIPES = 64

    def __init__(self, engine: Engine, limit: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.time):
        if limit < 1 or window_s <= 0:
            raise ValueError(f"LoginLimiter: limit {limit} and window_s {window_s} must be positive "
                             "(api.failed_logins_per_minute)")
        self.engine, self.limit, self.window_s, self.clock = engine, limit, window_s, clock
        self.good: OrderedDict[str, None] = OrderedDict()  # sha256 of tokens that verified
        self.lock = threading.Lock()
        self.stripes = [threading.Lock() for _ in range(self.STRIPES)]

    def verify(self, client: str, token: str, check: Callable[[str], T | None]) -> T | None:
        """`check(token)` under the limit: 429 when `client` is over it, its failures counted."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        if digest in self.good:
            return self._known(client, token, digest, check)
        with self.stripes[hash(client) % self.STRIPES]:  # a burst's first request verifies, the rest find it
            if digest in self.good:
                return self._known(client, token, digest, check)
            failures, window_start = self._count(client)
            if failures > self.limit:
                raise self._refusal(client, window_start)
            found = check(token)
            if found is not None:
                self._uncount(client, window_start)
                with self.lock:
                    self.good[digest] = None
                    while len(self.good) > self.GOOD_CACHE:
                        self.good.popitem(last=False)
            return found

    def _known(self, client: str, token: str, digest: str, check: Callable[[str], T | None]) -> T | None:
        found = check(token)
        if found is None:  # revoked or expired since: a failure like any other
            with self.lock:
                self.good.pop(digest, None)
            self.fail(client)
        return found

    def check(self, client: str) -> None:
        """429 (with Retry-After) when `client` has `limit` failures in its window."""
        with self.engine.connect() as conn:
            row = conn.execute(select(FAILURES.c.window_start, FAILURES.c.locked_until)
                               .where(FAILURES.c.client == client)).first()
        if row is not None and row.locked_until is not None and row.locked_until > self.clock():
            raise self._refusal(client, row.window_start)

    def fail(self, client: str) -> int:
        """Count one failed login from `client`; its failures in the window so far."""
        return self._count(client)[0]

    def _count(self, client: str) -> tuple[int, float]:
        """Add a failure to `client`'s window (a new window when none is open): (failures, window start).
        Starting a window also deletes the windows that have ended, so the table stays small."""
        now = self.clock()
        ends = now + self.window_s
        t = FAILURES.c
        expired = t.window_start <= now - self.window_s
        insert = (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(FAILURES)
        statement = insert.values(client=client, window_start=now, failures=1,
                                  locked_until=ends if self.limit <= 1 else None)
        statement = statement.on_conflict_do_update(index_elements=["client"], set_={
            "window_start": case((expired, literal(now, Float)), else_=t.window_start),
            "failures": case((expired, 1), else_=t.failures + 1),
            "locked_until": case((expired, literal(ends, Float) if self.limit <= 1 else null()),
                                 (t.failures + 1 >= self.limit, t.window_start + self.window_s),
                                 else_=null()),
        }).returning(t.failures, t.window_start)
        with self.engine.begin() as conn:
            failures, window_start = conn.execute(statement).one()
            if failures == 1:
                conn.execute(delete(FAILURES).where(t.window_start <= now - self.window_s))
        return int(failures), float(window_start)

    def _uncount(self, client: str, window_start: float) -> None:
        """Take back a failure counted for a token that verified (if its window is still the same)."""
        t = FAILURES.c
        with self.engine.begin() as conn:
            conn.execute(update(FAILURES).where(t.client == client, t.window_start == window_start,
                                                t.failures > 0)
                         .values(failures=t.failures - 1,
                                 locked_until=case((t.failures - 1 >= self.limit, t.locked_until), else_=null())))

    def _refusal(self, client: str, window_start: float) -> ApiError:
        wait = max(1, math.ceil(window_start + self.window_s - self.clock()))
        return ApiError(429, "too_many_failed_logins", f"too many failed logins from {client}",
                        where="Authorization header", hint=f"wait {wait} s, then use a valid token",
                        headers={"Retry-After": str(wait)})


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
