"""Browser sessions for the web UI: a random server-side session id in an HttpOnly, SameSite=Strict
cookie, the signed-in token's name and role, and a CSRF token per session for every form.

The API token itself never reaches the page: it is checked once at login and only its id is kept.
Each request re-checks that the token was not revoked since. Sessions live in this process's memory
(one `trimloop serve` process); a restart signs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from fastapi import Request, Response
from sqlmodel import Session

from trimloop.api.auth import PERMISSIONS, Principal
from trimloop.core.tables import ApiToken

COOKIE = "trimloop_session"
SIGNED_IN_S = 8 * 3600  # a working day
ANONYMOUS_S = 3600  # a login form left open
MAX_SESSIONS = 20_000
MAX_FORM_BYTES = 64_000


@dataclass
class UiSession:
    """One browser: its CSRF token and, once signed in, who it is."""

    sid: str
    csrf: str
    expires: float
    principal: Principal | None = None
    flash: list[str] = field(default_factory=list)

    def can(self, permission: str) -> bool:
        return self.principal is not None and permission in PERMISSIONS.get(self.principal.role, frozenset())


class SessionStore:
    """Sessions by id, with expiry; thread-safe because sync routes run in a thread pool."""

    def __init__(self) -> None:
        self._sessions: dict[str, UiSession] = {}
        self._lock = threading.Lock()

    def _new(self, principal: Principal | None) -> UiSession:
        ttl = SIGNED_IN_S if principal else ANONYMOUS_S
        session = UiSession(sid=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                            expires=time.time() + ttl, principal=principal)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._sweep()
            self._sessions[session.sid] = session
        return session

    def _sweep(self) -> None:
        now = time.time()
        for sid in [s for s, v in self._sessions.items() if v.expires < now]:
            del self._sessions[sid]
        if len(self._sessions) >= MAX_SESSIONS:  # still full: drop anonymous ones first
            for sid in [s for s, v in self._sessions.items() if v.principal is None]:
                del self._sessions[sid]

    def get(self, sid: str | None) -> UiSession | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires < time.time():
                del self._sessions[sid]
                return None
            return session

    def anonymous(self) -> UiSession:
        return self._new(None)

    def sign_in(self, old: UiSession | None, principal: Principal) -> UiSession:
        """A fresh session id at login, so a planted id never becomes a signed-in one."""
        self.drop(old)
        return self._new(principal)

    def drop(self, session: UiSession | None) -> None:
        if session is not None:
            with self._lock:
                self._sessions.pop(session.sid, None)


def store_of(request: Request) -> SessionStore:
    app_state = request.app.state
    if not hasattr(app_state, "ui_sessions"):
        app_state.ui_sessions = SessionStore()
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
