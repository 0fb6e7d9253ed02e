"""What every UI page shares: the Jinja environment (autoescaped), rendering with the session's
CSRF token and role, the sign-in guard, and the flash-and-redirect after a form post."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from trimloop.api.auth import PERMISSIONS
from trimloop.api.ui import charts, sessions
from trimloop.api.ui.sessions import UiSession
from trimloop.core.retirement import today_of
from trimloop.core.tables import utcnow

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.autoescape = True  # every template, whatever its extension
templates.env.globals.update(money=charts.money)
templates.env.filters["pct"] = lambda v: "—" if v is None else f"{v * 100:+.1f} pp"
templates.env.filters["num"] = lambda v, d=3: "—" if not isinstance(v, int | float) else f"{v:.{d}f}"
templates.env.filters["secs"] = (  # evidence may lack a figure (older suggestions): "—", not a 500
    lambda v: "—" if not isinstance(v, int | float) else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"))
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInNeeded(Exception):
    """Raised by `signed_in` when there is no session; the handler redirects to the login form."""

    def __init__(self, path: str):
        self.path = path


def today(request: Request) -> date:
    """The app's clock's day (create_app's `clock`), for "retires in N days"."""
    return today_of(getattr(request.app.state, "clock", utcnow)())


def signed_in(request: Request, db: Session) -> UiSession:
    session = sessions.current(request, db)
    if session is None:
        raise SignInNeeded(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return session


def login_redirect(request: Request, exc: SignInNeeded) -> Response:
    return RedirectResponse(f"/ui/login?next={quote(exc.path, safe='')}", status_code=303)


def safe_next(value: str | None) -> str:
    """Only a path inside the UI, never another site (`//evil`, `/\\evil`)."""
    if value and (value == "/ui" or value.startswith("/ui/")) and "\\" not in value and "//" not in value:
        return value
    return "/ui/"


def render(request: Request, name: str, session: UiSession | None, status_code: int = 200,
           **context: Any) -> Response:
    principal = session.principal if session else None
    flash = session.take_flash() if session else []
    perms = PERMISSIONS.get(principal.role, frozenset()) if principal else frozenset()
    response = templates.TemplateResponse(request, name, {
        "me": principal, "csrf": session.csrf if session else "", "perms": perms, "flash": flash,
        "nav": request.url.path, **context}, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def back(session: UiSession, to: str, message: str | None = None) -> Response:
    """Post/redirect/get: remember a message for the next page and go there."""
    if message:
        session.remember(message)
    return RedirectResponse(to, status_code=303)
