"""The web UI's prompt pages: every prompt with its last health verdict, and one prompt's health
(verdict, why, and each signal over the days of its window), checked again when the page opens."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import Response
from sqlmodel import col, select

from trimloop.api import services, webhooks
from trimloop.api.auth import SessionDep
from trimloop.api.ui import charts, pages
from trimloop.api.ui.pages import render
from trimloop.core.errors import TrimloopError
from trimloop.core.tables import Prompt, PromptHealth, utcnow

router = APIRouter(include_in_schema=False)
VERDICT_WORDS = {"healthy": "Healthy", "degraded": "Degraded", "broken": "Broken", "unknown": "Unknown"}


@router.get("/prompts")
def prompts(request: Request, db: SessionDep) -> Response:
    session = pages.signed_in(request, db)
    rows = db.exec(select(Prompt, PromptHealth).join(PromptHealth, col(PromptHealth.prompt_id) == Prompt.id,
                                                     isouter=True).order_by(col(Prompt.name)).limit(500)).all()
    return render(request, "prompts.html", session, rows=[
        {"id": p.id, "name": p.name, "verdict": str(h.verdict) if h else None,
         "why": "; ".join(h.report.reasons) if h else "", "checked": h.checked_at if h else None}
        for p, h in rows], words=VERDICT_WORDS)


@router.get("/prompts/{prompt_id}/health")
def prompt_health(prompt_id: int, request: Request, tasks: BackgroundTasks, db: SessionDep) -> Response:
    session = pages.signed_in(request, db)
    prompt = db.get(Prompt, prompt_id)
    if prompt is None:
        return render(request, "error.html", session, status_code=404,
                      error=TrimloopError(f"no prompt with id {prompt_id}", where="prompts",
                                          hint="open the prompt from the Prompts page"))
    name = prompt.name
    db.rollback()  # end this request's read before the check writes (SQLite takes one writer at a time)
    engine, settings = request.app.state.engine, request.app.state.settings
    try:
        outcome = services.check_health(engine=engine, settings=settings, prompt_ids=[prompt_id], now=utcnow())
    except TrimloopError as exc:
        return render(request, "error.html", session, status_code=400, error=exc)
    tasks.add_task(webhooks.announce_health, engine=engine, settings=settings, changes=outcome.changes)
    report = outcome.reports[prompt_id]
    judged = [s for s in report.signals if s.better != "none"]
    shown = [s for s in report.signals if s.better == "none"]
    return render(request, "prompt_health.html", session, prompt=name, prompt_id=prompt_id, report=report,
                  words=VERDICT_WORDS, judged=[(s, charts.sparkline(s.days)) for s in judged],
                  info=[(s, charts.sparkline(s.days)) for s in shown])
