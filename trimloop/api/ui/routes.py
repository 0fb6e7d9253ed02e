"""The web UI's routes for reviewers: sign in and out, the review queue, one suggestion with its
evidence, and the decisions (approve, reject with a reason, deploy, promote, rollback).

Every form carries the session's CSRF token; every decision goes through the same functions as
the REST API, so the audit log, webhooks and idempotency are the same. `install(app)` mounts it all.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlmodel import col, select
from starlette.types import ASGIApp, Receive, Scope, Send

from trimloop.api import errors
from trimloop.api.auth import PERMISSIONS, Principal, SessionDep, client_address
from trimloop.api.errors import ApiError
from trimloop.api.routes import suggestions as api
from trimloop.api.schemas import RejectRequest
from trimloop.api.ui import health, monitor, pages, sessions, views
from trimloop.api.ui.pages import render
from trimloop.core import store
from trimloop.core.errors import TrimloopError
from trimloop.core.store import Superseded, verify_token
from trimloop.core.tables import Deployment, Prompt, PromptVersion, Review, Watch

router = APIRouter(include_in_schema=False)
ACTIONS = {"approve": "review", "reject": "review", "deploy": "operate", "promote": "operate", "rollback": "operate"}
DONE = {"approve": "approved", "reject": "rejected", "deploy": "deployed to staging",
        "promote": "promoted to production", "rollback": "rolled back"}


def install(app: FastAPI) -> None:
    """Mount the UI as its own app under /ui/ (cookie sessions, HTML pages, no OpenAPI), sharing the
    API's state (engine, settings, login limiter), and send / to it.

    A mounted app rather than more routes: the API's route table (and its authorization matrix)
    stays the Bearer-token API's alone."""
    ui = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    ui.state = app.state
    app.state.ui_sessions = sessions.SessionStore(app.state.engine)
    errors.install(ui)
    ui.add_exception_handler(pages.SignInNeeded, pages.login_redirect)  # type: ignore[arg-type]
    ui.mount("/static", StaticFiles(directory=str(pages.HERE / "static")), name="static")
    ui.include_router(router)
    ui.include_router(monitor.router)
    ui.include_router(health.router)
    app.mount("/ui", ui, name="ui")
    app.add_middleware(RootRedirect)


class RootRedirect:
    """GET / and /ui go to the UI's home, /ui/ (plain ASGI: no route in the API's table)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in ("/", "/ui") and scope["method"] in ("GET", "HEAD"):
            await RedirectResponse("/ui/", status_code=307)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@router.get("/login")
def login_form(request: Request, db: SessionDep, next: str | None = None) -> Response:
    if sessions.current(request, db) is not None:
        return RedirectResponse(pages.safe_next(next), status_code=303)
    session = sessions.store_of(request).get(request.cookies.get(sessions.COOKIE)) or \
        sessions.store_of(request).anonymous()
    response = render(request, "login.html", session, next=pages.safe_next(next))
    sessions.set_cookie(request, response, session)
    return response


@router.post("/login")
async def login(request: Request, db: SessionDep) -> Response:
    form = await sessions.read_form(request)
    store_ = sessions.store_of(request)
    session = store_.get(request.cookies.get(sessions.COOKIE))
    target = pages.safe_next(form.get("next"))
    if not sessions.csrf_ok(session, form):
        session = store_.anonymous()
        response = render(request, "login.html", session, status_code=403, next=target,
                          error="The form expired. Sign in again.")
        sessions.set_cookie(request, response, session)
        return response
    assert session is not None
    client = client_address(request)
    limiter = request.app.state.login_limiter
    try:
        token = limiter.verify(client, form.get("token", "").strip(), lambda clear: verify_token(session=db, token=clear))
    except ApiError:
        return render(request, "login.html", session, status_code=429, next=target,
                      error="Too many failed sign-ins from this address. Wait a minute, then try again.")
    if token is None:
        return render(request, "login.html", session, status_code=401, next=target,
                      error="Unknown, revoked or expired token. Check it (it is shown once at creation) or ask an admin "
                            "for one: trimloop tokens create --role reviewer --name YOUR-NAME")
    if "read" not in PERMISSIONS.get(token.role, frozenset()):
        return render(request, "login.html", session, status_code=403, next=target,
                      error=f"A token with role {token.role} only sends spans to POST /v1/traces; sign in with "
                            "a viewer, reviewer, engineer or admin token.")
    principal = Principal(name=token.name, role=token.role, token_id=token.id)  # type: ignore[arg-type]
    signed = store_.sign_in(session, principal)
    response = RedirectResponse(target, status_code=303)
    sessions.set_cookie(request, response, signed)
    return response


@router.post("/logout")
async def logout(request: Request, db: SessionDep) -> Response:
    """Ends the server session whatever the form carries: a sign-out that only cleared the cookie
    would leave a live session behind (the cookie is SameSite=Strict, so another site cannot
    post here with it; the worst a forged request could do is sign someone out)."""
    await sessions.read_form(request)
    sessions.store_of(request).drop(sessions.current(request, db))
    response = RedirectResponse("/ui/login", status_code=303)
    sessions.clear_cookie(response)
    return response


@router.get("/")
def queue(request: Request, db: SessionDep) -> Response:
    session = pages.signed_in(request, db)
    cards, count = views.queue_cards(db, today=pages.today(request))
    return render(request, "queue.html", session, cards=cards, count=count)


@router.get("/suggestions/{suggestion_id}")
def suggestion(suggestion_id: int, request: Request, db: SessionDep) -> Response:
    session = pages.signed_in(request, db)
    try:
        s = store.get_suggestion(session=db, suggestion_id=suggestion_id)
    except TrimloopError as exc:
        return render(request, "error.html", session, status_code=404, error=exc)
    evidence = s.evidence
    before, after = db.get(PromptVersion, s.baseline_version_id), db.get(PromptVersion, s.candidate_version_id)
    prompt = db.get(Prompt, s.prompt_id)
    words, ok = views.verdict(evidence)
    return render(
        request, "suggestion.html", session, s=s, ev=evidence, prompt=prompt.name if prompt else "?",
        before=before, after=after, verdict=words, ok=ok,
        deadline=views.deadline_words(evidence.deadline.retires_on if evidence.deadline else s.retires_on,
                                      pages.today(request)),
        change=views.change_in_words(evidence, before.model if before else None, after.model if after else None),
        diff=views.template_diff(evidence, before.template if before else {}, after.template if after else {}),
        rows=views.evidence_rows(evidence), margin=evidence.margin(), savings=evidence.savings,
        items=evidence.differing_items[:20], lineage=evidence.lineage,
        reviews=db.exec(select(Review).where(Review.suggestion_id == s.id).order_by(col(Review.id))).all(),
        deployments=db.exec(select(Deployment).where(Deployment.suggestion_id == s.id)
                            .order_by(col(Deployment.id))).all(),
        watch=db.exec(select(Watch).where(Watch.suggestion_id == s.id)).first())


@router.post("/suggestions/{suggestion_id}/{action}")
async def decide(suggestion_id: int, action: str, request: Request, tasks: BackgroundTasks,
                 db: SessionDep) -> Response:
    session = pages.signed_in(request, db)
    form = await sessions.read_form(request)
    page = f"/ui/suggestions/{suggestion_id}"
    if action not in ACTIONS:
        return pages.back(session, page, f"Unknown action {action!r}.")
    if not sessions.csrf_ok(session, form):
        return pages.back(session, page, "The form expired (reload the page and try again); nothing was changed.")
    if not session.can(ACTIONS[action]):
        return pages.back(session, page, f"Your role ({session.principal.role}) may not {action}.")  # type: ignore[union-attr]
    who = session.principal
    assert who is not None
    try:
        if action == "approve":
            api.approve(suggestion_id, request, tasks, db, who)
        elif action == "reject":
            reason = form.get("reason", "").strip()
            if not reason:
                return pages.back(session, page, "A rejection needs a reason: say what is wrong.")
            api.reject(suggestion_id, RejectRequest(reason=reason[:2000]), db, who)
        elif action == "deploy":
            api.deploy(suggestion_id, request, tasks, db, request.app.state.settings, who)
        elif action == "promote":
            api.promote(suggestion_id, db, request.app.state.settings, who)
        else:
            api.rollback(suggestion_id, db, request.app.state.settings, who)
    except TrimloopError as exc:
        if isinstance(exc, Superseded):
            db.commit()  # the new `superseded` status is the news
        else:
            db.rollback()
        return pages.back(session, page, f"Could not {action}: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""))
    # commit the decision before the flash message is saved on the session's own connection: SQLite
    # would otherwise keep that write waiting on this request's write lock
    db.commit()
    return pages.back(session, "/ui/" if action in ("approve", "reject") else page,
                      f"Suggestion {suggestion_id} {DONE[action]}.")
