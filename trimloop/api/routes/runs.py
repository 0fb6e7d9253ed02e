"""`/runs`: start an optimization run (202), watch it (status, event stream), cancel it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from trimloop.api import services
from trimloop.api.auth import Operator, Reader, SessionDep, SettingsDep
from trimloop.api.errors import ApiError
from trimloop.api.schemas import RunCreate, RunEventPublic, RunPublic, RunStatus
from trimloop.core import store
from trimloop.core.tables import OptimizationRun, RunEvent
from trimloop.optimizer.config import RunOptionError

router = APIRouter(prefix="/runs", tags=["runs"])
POLL_S = 0.5


@router.post("", response_model=RunPublic, status_code=202,
             summary="start a run; returns at once (409 while another run of the prompt is queued or running)")
async def create_run(body: RunCreate, request: Request, settings: SettingsDep, who: Operator) -> OptimizationRun:
    engine: Engine = request.app.state.engine
    try:  # on a thread: queueing waits on the prompt's lock, which must not stall the server's loop
        run_id = await asyncio.to_thread(
            services.start_run, engine=engine, settings=settings, prompt_id=body.prompt_id, config=body.config,
            budget_calls=body.budget_calls, budget_dollars=body.budget_dollars, actor=who.actor)
    except RunOptionError as exc:
        if not exc.from_run:  # the server's [prompts.NAME] options: 400 bad_config naming the key
            raise
        where = f"body field 'config.{exc.field}'"
        raise ApiError(422, "invalid_request", f"{where}: {exc.message}", where=where, hint=exc.hint) from None
    with Session(engine) as session:
        run = store.get_run(session=session, run_id=run_id)
    request.app.state.runs.schedule(run_id)
    return run


@router.get("", response_model=list[RunPublic], summary="runs, newest first")
def list_runs(session: SessionDep, _: Reader, prompt_id: int | None = None,
              status: str | None = Query(None, examples=["running"]),
              limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> list[OptimizationRun]:
    query = select(OptimizationRun)
    if prompt_id is not None:
        query = query.where(OptimizationRun.prompt_id == prompt_id)
    if status is not None:
        query = query.where(OptimizationRun.status == status)
    return list(session.exec(query.order_by(col(OptimizationRun.id).desc()).offset(offset).limit(limit)).all())


@router.get("/{run_id}", response_model=RunStatus, summary="status, progress and spend against budget")
def get_run(run_id: int, session: SessionDep, _: Reader) -> RunStatus:
    run = store.get_run(session=session, run_id=run_id)
    count = session.exec(select(func.count()).where(RunEvent.run_id == run_id)).one()
    last = session.exec(select(RunEvent.kind).where(RunEvent.run_id == run_id)
                        .order_by(col(RunEvent.id).desc())).first()
    shares = [run.spent_dollars / run.budget_dollars if run.budget_dollars else None,
              run.calls_made / run.budget_calls if run.budget_calls else None]
    used = max((s for s in shares if s is not None), default=None)
    return RunStatus.model_validate({**RunPublic.model_validate(run).model_dump(), "events": count,
                                     "last_event": last, "budget_used": used})


@router.post("/{run_id}/cancel", response_model=RunPublic, summary="cancel; the run stops at its next step")
def cancel_run(run_id: int, session: SessionDep, who: Operator) -> OptimizationRun:
    return store.cancel_run(session=session, run_id=run_id, actor=who.actor)


def _poll(engine: Engine, run_id: int, after: int) -> tuple[list[RunEvent], str | None]:
    with Session(engine) as session:
        events = list(session.exec(select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.id > after)
                                   .order_by(col(RunEvent.id)).limit(500)).all())
        run = session.get(OptimizationRun, run_id)
        return events, run.status if run else None


@router.get("/{run_id}/events", summary="server-sent events: the run's timeline, live",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"example": 'id: 3\nevent: candidate.proposed\n'
                                                                          'data: {"moves": ["shorten"]}\n\n'}}}})
def run_events(run_id: int, request: Request, session: SessionDep, _: Reader,
               follow: bool = Query(True, description="keep the stream open until the run ends"),
               last_event_id: int | None = Header(None, ge=0, le=2**31 - 1,  # an event id fits INTEGER
                                                  description="resume after this event id")) -> StreamingResponse:
    store.get_run(session=session, run_id=run_id)
    engine: Engine = request.app.state.engine

    async def stream() -> AsyncIterator[str]:
        after = last_event_id or 0
        while True:
            events, status = await asyncio.to_thread(_poll, engine, run_id, after)
            for event in events:
                after = event.id  # type: ignore[assignment]
                data = RunEventPublic.model_validate(event).model_dump(mode="json")
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(data)}\n\n"
            if len(events) == 500:
                continue
            if not follow or status in store.RUN_DONE or status is None:
                yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
