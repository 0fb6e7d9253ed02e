"""Browser sessions for the web UI: a random server-side session id in an HttpOnly, SameSite=Strict
cookie, the signed-in token's name and role, and a CSRF token per session for every form.

The API token itself never reaches the page: it is checked once at login and only its id is kept.
Each request re-checks that the token was not revoked (or expired) since. Sessions live in the
database (table `uisession`, keyed by a SHA-256 digest of the id, so reading the table gives no
working session): every `trimloop serve` process on the same database knows them, and a restart
signs nobody out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request, Response
from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from trimloop.api.auth import PERMISSIONS, Principal
from trimloop.core.tables import ApiToken, as_utc, utcnow
from trimloop.core.tables import UiSession as UiSessionRow

COOKIE = "trimloop_session"
SIGNED_IN_S = 8 * 3600  # a working day
ANONYMOUS_S = 3600  # a login form left open
MAX_SESSIONS = 20_000  # anonymous rows beyond this are dropped, oldest first, at the next sweep
SWEEP_EVERY_S = 60.0
MAX_FORM_BYTES = 64_000
MAX_SID_CHARS = 100  # ours are 43; anything longer is not ours


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


@dataclass
class UiSession:
    """One browser: its CSRF token and, once signed in, who it is."""

    sid: str
    csrf: str
    expires: float
    principal: Principal | None = None
    flash: list[str] = field(default_factory=list)
    store: Any = field(default=None, repr=False, compare=False)  # the SessionStore that saves flash changes

    def can(self, permission: str) -> bool:
        return self.principal is not None and permission in PERMISSIONS.get(self.principal.role, frozenset())

    def remember(self, message: str) -> None:
        """A message for the next page this browser sees."""
        self.flash.append(message)
        if self.store is not None:
            self.store.save_flash(self)

    def take_flash(self) -> list[str]:
        """The messages waiting for this page; they are shown once."""
        waiting, self.flash = list(self.flash), []
        if waiting and self.store is not None:
            self.store.save_flash(self)
        return waiting


class SessionStore:
    """Sessions in the database, by digest of their id, with expiry. Expired rows (and anonymous
    ones beyond MAX_SESSIONS, oldest first) are swept at most once a minute per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    def _new(self, principal: Principal | None) -> UiSession:
        ttl = SIGNED_IN_S if principal else ANONYMOUS_S
        session = UiSession(sid=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                            expires=time.time() + ttl, principal=principal, store=self)
        self._sweep_now_and_then()
        with Session(self.engine) as db:
            db.add(UiSessionRow(
                digest=_digest(session.sid), csrf=session.csrf, expires_at=_utc(session.expires),
                token_id=principal.token_id if principal else None, name=principal.name if principal else None,
                role=principal.role if principal else None, flash=[]))
            db.commit()
        return session

    def _sweep_now_and_then(self) -> None:
        with self._lock:
            if time.monotonic() - self._last_sweep < SWEEP_EVERY_S:
                return
            self._last_sweep = time.monotonic()
        with Session(self.engine) as db:
            db.exec(delete(UiSessionRow).where(col(UiSessionRow.expires_at) < utcnow()))  # type: ignore[call-overload]
            anonymous = select(UiSessionRow.digest).where(col(UiSessionRow.token_id).is_(None))
            extra = db.exec(select(func.count()).select_from(anonymous.subquery())).one() - MAX_SESSIONS
            if extra > 0:
                oldest = anonymous.order_by(col(UiSessionRow.created_at)).limit(extra)
                db.exec(delete(UiSessionRow).where(col(UiSessionRow.digest).in_(oldest)))  # type: ignore[call-overload]
            db.commit()

    def get(self, sid: str | None) -> UiSession | None:
        if not sid or len(sid) > MAX_SID_CHARS:
            return None
        with Session(self.engine) as db:
            row = db.get(UiSessionRow, _digest(sid))
            if row is None:
                return None
            expires = as_utc(row.expires_at).timestamp()
            if expires < time.time():
                db.delete(row)
                db.commit()
                return None
            principal = None if row.token_id is None else Principal(name=row.name or "", role=row.role or "",
                                                                     token_id=row.token_id)
            return UiSession(sid=sid, csrf=row.csrf, expires=expires, principal=principal,
                             flash=list(row.flash or []), store=self)

    def save_flash(self, session: UiSession) -> None:
        with Session(self.engine) as db:
            row = db.get(UiSessionRow, _digest(session.sid))
            if row is not None:
                row.flash = list(session.flash)
                db.add(row)
                db.commit()

    def anonymous(self) -> UiSession:
        return self._new(None)

    def sign_in(self, old: UiSession | None, principal: Principal) -> UiSession:
        """A fresh session id at login, so a planted id never becomes a signed-in one."""
        self.drop(old)
        return self._new(principal)

    def drop(self, session: UiSession | None) -> None:
        if session is not None:
            with Session(self.engine) as db:
                db.exec(delete(UiSessionRow).where(col(UiSessionRow.digest) == _digest(session.sid)))  # type: ignore[call-overload]
                db.commit()


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def store_of(request: Request) -> SessionStore:
    app_state = request.app.state
    if not hasattr(app_state, "ui_sessions"):
        app_state.ui_sessions = SessionStore(app_state.engine)
    return app_state.ui_sessions  # type: ignore[no-any-return]


def current(request: Request, db: Session) -> UiSession | None:
    """The signed-in session of this request, or None (also when its token was revoked or expired)."""
    session = store_of(request).get(request.cookies.get(COOKIE))
    if session is None or session.principal is None:
        return None
    token = db.get(ApiToken, session.principal.token_id)
    if token is None or not token.live():
        store_of(request).drop(session)
        return None
    return session


def set_cookie(request: Request, response: Response, session: UiSession) -> None:
    ttl = SIGNED_IN_S if session.principal else ANONYMOUS_S
    response.set_cookie(COOKIE, session.sid, max_age=ttl, path="/ui", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")


async def read_form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as a dict (first value of each field)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
    return {k: v[0] for k, v in parsed.items()}


def csrf_ok(session: UiSession | None, form: dict[str, str]) -> bool:
    """The form's hidden `csrf` field equals this session's token (constant-time)."""
    return session is not None and hmac.compare_digest(session.csrf.encode(), form.get("csrf", "").encode())
