"""`/prompts`: prompts (with their last health verdict), their versions, traffic and cost from the
logs, and their health computed on demand."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, BackgroundTasks, Query
from sqlmodel import col, select

from trimloop.api import services, webhooks
from trimloop.api.auth import EngineDep, Reader, SessionDep, SettingsDep
from trimloop.api.schemas import PromptPublic, PromptVersionPublic, TrafficSummary
from trimloop.core.errors import NotFound
from trimloop.core.evidence import HealthReport
from trimloop.core import traffic as aggregates
from trimloop.core.tables import Prompt, PromptHealth, PromptVersion, utcnow

router = APIRouter(prefix="/prompts", tags=["prompts"])


def _prompt(session: SessionDep, prompt_id: int) -> Prompt:
    prompt = session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound(f"no prompt with id {prompt_id}", where="prompts", hint="list them: GET /prompts")
    return prompt


def _public(prompt: Prompt, health: PromptHealth | None) -> PromptPublic:
    return PromptPublic.model_validate(prompt).model_copy(update={
        "health": str(health.verdict) if health else None,
        "health_checked_at": health.checked_at if health else None})


@router.get("", response_model=list[PromptPublic], summary="every synced prompt, with its last health verdict")
def list_prompts(session: SessionDep, _: Reader, limit: int = Query(200, ge=1, le=1000),
                 offset: int = Query(0, ge=0)) -> list[PromptPublic]:
    rows = session.exec(select(Prompt, PromptHealth).join(PromptHealth, col(PromptHealth.prompt_id) == Prompt.id,
                                                          isouter=True)
                        .order_by(col(Prompt.name)).offset(offset).limit(limit)).all()
    return [_public(prompt, health) for prompt, health in rows]


@router.get("/{prompt_id}", response_model=PromptPublic, summary="one prompt, with its last health verdict")
def get_prompt(prompt_id: int, session: SessionDep, _: Reader) -> PromptPublic:
    prompt = _prompt(session, prompt_id)
    return _public(prompt, session.exec(select(PromptHealth).where(PromptHealth.prompt_id == prompt_id)).first())


@router.get("/{prompt_id}/health", response_model=HealthReport,
            summary="its health now: verdict, why, and every signal per day (computed from its logs, then stored)")
def prompt_health(prompt_id: int, engine: EngineDep, settings: SettingsDep, tasks: BackgroundTasks,
                  _: Reader) -> HealthReport:
    outcome = services.check_health(engine=engine, settings=settings, prompt_ids=[prompt_id])
    tasks.add_task(webhooks.announce_health, engine=engine, settings=settings, changes=outcome.changes)
    return outcome.reports[prompt_id]


@router.get("/{prompt_id}/versions", response_model=list[PromptVersionPublic], summary="its versions, newest first")
def list_versions(prompt_id: int, session: SessionDep, _: Reader) -> list[PromptVersionPublic]:
    _prompt(session, prompt_id)
    return PromptVersionPublic.of(session, session.exec(
        select(PromptVersion).where(PromptVersion.prompt_id == prompt_id)
        .order_by(col(PromptVersion.created_at).desc(), col(PromptVersion.id).desc())).all())


@router.get("/{prompt_id}/traffic", response_model=TrafficSummary, summary="calls and cost from the logs")
def traffic(prompt_id: int, session: SessionDep, _: Reader,
            days: int = Query(30, ge=1, le=3650, description="look-back window")) -> TrafficSummary:
    _prompt(session, prompt_id)
    since = utcnow() - timedelta(days=days)
    conn = session.connection()
    by = aggregates.sums(conn, by=("version_id", "model"), since=since, prompt_ids=[prompt_id])
    calls = round(sum(s.calls for s in by.values()))
    cost = sum(s.spend for s in by.values())
    [p50] = aggregates.latency_quantiles(conn, qs=(0.5,), since=since, prompt_ids=[prompt_id])
    versions: dict[int | None, list[float]] = {}
    models: dict[str | None, list[float]] = {}
    for (version_id, model), s in by.items():
        for totals, key in ((versions, version_id), (models, model)):
            acc = totals.setdefault(key, [0.0, 0.0])  # type: ignore[arg-type]
            acc[0] += s.calls
            acc[1] += s.spend
    by_version = [{"version_id": v, "calls": round(n), "cost": c} for v, (n, c) in versions.items()]
    by_model = [{"model": m, "calls": round(n), "cost": c} for m, (n, c) in models.items()]
    return TrafficSummary(prompt_id=prompt_id, days=days, calls=calls, calls_per_day=calls / days,
                          total_cost=cost, cost_per_call=cost / calls if calls else None,
                          latency_p50_s=p50,
                          by_version=by_version, by_model=by_model)
