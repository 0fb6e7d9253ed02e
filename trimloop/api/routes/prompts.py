"""`/prompts`: prompts, their versions, and traffic and cost from the logs."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query
from sqlalchemy import func
from sqlmodel import col, select

from trimloop.api.auth import Reader, SessionDep
from trimloop.api.reporting import CALLS, SPEND
from trimloop.api.schemas import PromptPublic, PromptVersionPublic, TrafficSummary
from trimloop.core.errors import NotFound
from trimloop.core.tables import MAX_LATENCY_S, LogRecord, Prompt, PromptVersion, utcnow

router = APIRouter(prefix="/prompts", tags=["prompts"])


def _prompt(session: SessionDep, prompt_id: int) -> Prompt:
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"no prompt with id {prompt_id}", where="prompts", hint="list them: GET /prompts")
    return prompt


@router.get("", response_model=list[PromptPublic], summary="every synced prompt")
def list_prompts(session: SessionDep, _: Reader, limit: int = Query(200, ge=1, le=1000),
                 offset: int = Query(0, ge=0)) -> list[Prompt]:
    return list(session.exec(select(Prompt).order_by(col(Prompt.name)).offset(offset).limit(limit)).all())


@router.get("/{prompt_id}", response_model=PromptPublic, summary="one prompt")
def get_prompt(prompt_id: int, session: SessionDep, _: Reader) -> Prompt:
    return _prompt(session, prompt_id)


@router.get("/{prompt_id}/versions", response_model=list[PromptVersionPublic], summary="its versions, newest first")
def list_versions(prompt_id: int, session: SessionDep, _: Reader) -> list[PromptVersion]:
    _prompt(session, prompt_id)
    return list(session.exec(select(PromptVersion).where(PromptVersion.prompt_id == prompt_id)
                             .order_by(col(PromptVersion.created_at).desc(), col(PromptVersion.id).desc())).all())


@router.get("/{prompt_id}/traffic", response_model=TrafficSummary, summary="calls and cost from the logs")
def traffic(prompt_id: int, session: SessionDep, _: Reader,
            days: int = Query(30, ge=1, le=3650, description="look-back window")) -> TrafficSummary:
    _prompt(session, prompt_id)
    since = utcnow() - timedelta(days=days)
    where = (LogRecord.prompt_id == prompt_id, LogRecord.called_at >= since)  # type: ignore[operator]
    calls, cost = session.exec(select(func.coalesce(func.sum(CALLS), 0.0), func.coalesce(func.sum(SPEND), 0.0))
                               .where(*where)).one()
    calls = round(calls)
    latencies = sorted(x for x in session.exec(select(LogRecord.latency_s).where(
        *where, col(LogRecord.latency_s).between(0, MAX_LATENCY_S)).limit(100_000)).all() if x is not None)
    by_version = [{"version_id": v, "calls": round(n), "cost": c} for v, n, c in session.exec(
        select(LogRecord.version_id, func.sum(CALLS), func.coalesce(func.sum(SPEND), 0.0))
        .where(*where).group_by(LogRecord.version_id)).all()]
    by_model = [{"model": m, "calls": round(n), "cost": c} for m, n, c in session.exec(
        select(LogRecord.model, func.sum(CALLS), func.coalesce(func.sum(SPEND), 0.0))
        .where(*where).group_by(LogRecord.model)).all()]
    return TrafficSummary(prompt_id=prompt_id, days=days, calls=calls, calls_per_day=calls / days,
                          total_cost=cost, cost_per_call=cost / calls if calls else None,
                          latency_p50_s=latencies[len(latencies) // 2] if latencies else None,
                          by_version=by_version, by_model=by_model)
