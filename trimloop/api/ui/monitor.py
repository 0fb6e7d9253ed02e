"""The web UI's pages for finance and engineers: the savings dashboard (with CSV export), the
optimization runs, one of them live through a cookie-authenticated event stream, and the setup
page (the doctor's findings)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from trimloop.api.auth import SessionDep
from trimloop.api.doctor import diagnose
from trimloop.api.reporting import as_csv, savings_report
from trimloop.api.ui import charts, pages, views
from trimloop.api.ui.pages import render
from trimloop.core import store
from trimloop.core.errors import TrimloopError
from trimloop.core.tables import Candidate, OptimizationRun, Prompt, RunEvent, utcnow

router = APIRouter(include_in_schema=False)
POLL_S = 0.5


def _range(start: str | None, end: str | None) -> tuple[date, date]:
    today = utcnow().date()
    last = views.parse_day(end, today)
    first = views.parse_day(start, last - timedelta(days=29))
    if first > last:
        first, last = last, first
    return max(first, last - timedelta(days=366)), last


@router.get("/dashboard")
def dashboard(request: Request, db: SessionDep, start: str | None = None, end: str | None = None) -> Response:
    session = pages.signed_in(request, db)
    first, last = _range(start, end)
    days = (utcnow().date() - first).days + 1
    projected, count, total, extra = views.open_savings(db, today=pages.today(request))
    done = views.realized_rows(db)
    realized = [(f"#{r.suggestion_id} {r.prompt}", r.projected_monthly_savings, r.realized_monthly_savings)
                for r in done]
    return render(request, "dashboard.html", session, start=first.isoformat(), end=last.isoformat(),
                  spend=views.spend_series(db, first, last), projected=projected, projected_count=count,
                  total_projected=total, total_extra_cost=extra, realized=done, realized_chart=charts.paired_bars(realized),
                  total_realized=sum(r.realized_monthly_savings or 0 for r in done if r.status == "deployed"),
                  days=max(1, days))


@router.get("/dashboard.csv")
def dashboard_csv(request: Request, db: SessionDep, days: int = 30) -> Response:
    pages.signed_in(request, db)
    body = as_csv(savings_report(db, min(max(1, days), 3650)))
    return Response(body, media_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="trimloop-savings.csv"', "Cache-Control": "no-store"})


@router.get("/runs")
def runs(request: Request, db: SessionDep) -> Response:
    session = pages.signed_in(request, db)
    names = dict(db.exec(select(Prompt.id, Prompt.name)).all())
    rows = db.exec(select(OptimizationRun).order_by(col(OptimizationRun.id).desc()).limit(200)).all()
    return render(request, "runs.html", session, runs=rows, names=names)


def _points(db: Session, run_id: int) -> list[dict[str, object]]:
    out = []
    for c in db.exec(select(Candidate).where(Candidate.run_id == run_id)).all():
        out.append({"label": c.scores.label or f"candidate {c.id}", "cost": c.cost_per_call,
                    "score": c.scores.mean_score(), "status": c.status})
    return out


@router.get("/runs/{run_id}")
def run_page(run_id: int, request: Request, db: SessionDep) -> Response:
    session = pages.signed_in(request, db)
    try:
        run = store.get_run(session=db, run_id=run_id)
    except TrimloopError as exc:
        return render(request, "error.html", session, status_code=404, error=exc)
    prompt = db.get(Prompt, run.prompt_id)
    return render(request, "run.html", session, run=run, prompt=prompt.name if prompt else "?",
                  plot=charts.scatter(_points(db, run_id)))


def _poll(engine: Engine, run_id: int, after: int) -> tuple[list[RunEvent], dict[str, object] | None]:
    with Session(engine) as db:
        events = list(db.exec(select(RunEvent).where(RunEvent.run_id == run_id, col(RunEvent.id) > after)
                              .order_by(col(RunEvent.id)).limit(500)).all())
        run = db.get(OptimizationRun, run_id)
        progress = None if run is None else {
            "status": run.status, "calls_made": run.calls_made, "spent_dollars": run.spent_dollars,
            "budget_calls": run.budget_calls, "budget_dollars": run.budget_dollars,
            "outcome": run.results.outcome(run.status, run.error)}
        return events, progress


@router.get("/runs/{run_id}/events")
def run_events(run_id: int, request: Request, db: SessionDep) -> Response:
    """The run's events as server-sent events, plus a `progress` event (spend, calls, status) per poll."""
    pages.signed_in(request, db)
    try:
        store.get_run(session=db, run_id=run_id)
    except TrimloopError:
        return Response("no such run", status_code=404)
    engine: Engine = request.app.state.engine
    start = int(request.headers.get("last-event-id") or 0) if (request.headers.get("last-event-id") or "0").isdigit() \
        else 0

    async def stream() -> AsyncIterator[str]:
        after = start
        while True:
            events, progress = await asyncio.to_thread(_poll, engine, run_id, after)
            for event in events:
                after = event.id  # type: ignore[assignment]
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.data, default=str)}\n\n"
            yield f"event: progress\ndata: {json.dumps(progress)}\n\n"
            if len(events) == 500:
                continue
            if progress is None or progress["status"] in store.RUN_DONE:
                yield "event: end\ndata: {}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/setup")
def setup(request: Request, db: SessionDep) -> Response:
    """The doctor's findings on this server's settings and database (engineers and admins)."""
    session = pages.signed_in(request, db)
    if not session.can("operate"):
        return render(request, "setup.html", session, status_code=403, report=None,
                      denied=f"Your role ({session.principal.role}) may not see the setup checks: they need an "  # type: ignore[union-attr]
                             "engineer or admin token.")
    db.commit()  # the checks take a while and read through their own connections: hold no transaction
    report = diagnose(request.app.state.settings, engine=request.app.state.engine)
    return render(request, "setup.html", session, report=report, denied=None)
