"""`/suggestions`: the review queue, the evidence, decisions, and deploy / promote / rollback."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, BackgroundTasks, Query, Request
from sqlmodel import col, select

from trimloop.api import deploy as write_back
from trimloop.api import webhooks
from trimloop.api.auth import Operator, Reader, Reviewer, SessionDep, SettingsDep
from trimloop.api.schemas import (
    DeploymentPublic,
    PromptVersionPublic,
    ItemPairPublic,
    RejectRequest,
    SuggestionDetail,
    SuggestionItems,
    SuggestionPublic,
    TrialPublic,
    WatchPublic,
)
from trimloop.core import store
from trimloop.core.errors import NotFound
from trimloop.core.status import SuggestionKind, SuggestionStatus
from trimloop.core.tables import Candidate, Deployment, Prompt, PromptVersion, Review, Suggestion, Watch
from trimloop.evals.report import item_pairs
from trimloop.evals.runner import ItemResult

router = APIRouter(prefix="/suggestions", tags=["suggestions"])
def _announce(tasks: BackgroundTasks, request: Request, event: str, suggestion: Suggestion) -> None:
    tasks.add_task(webhooks.notify, engine=request.app.state.engine, settings=request.app.state.settings,
                   event=event, data=webhooks.suggestion_event(suggestion))


@router.get("", response_model=list[SuggestionPublic], summary="the queue: migrations, then repairs, then the biggest savings")
def list_suggestions(session: SessionDep, _: Reader,
                     status: SuggestionStatus | None = Query(None, examples=["pending"]),
                     prompt_id: int | None = None,
                     min_savings: float | None = Query(None, description="projected USD per month", examples=[100]),
                     kind: SuggestionKind | None = Query(None, description="cost, latency or repair", examples=["repair"]),
                     limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> list[Suggestion]:
    return store.list_suggestions(session=session, status=status, prompt_id=prompt_id,
                                  min_savings=min_savings, kind=kind, limit=limit, offset=offset)


@router.get("/{suggestion_id}", response_model=SuggestionDetail, summary="one suggestion with all its evidence")
def get_suggestion(suggestion_id: int, session: SessionDep, _: Reader) -> SuggestionDetail:
    s = store.get_suggestion(session=session, suggestion_id=suggestion_id)
    prompt = session.get(Prompt, s.prompt_id)
    candidate = session.get(Candidate, s.candidate_id) if s.candidate_id else None
    reviews = session.exec(select(Review).where(Review.suggestion_id == s.id).order_by(col(Review.id))).all()
    deployments = session.exec(select(Deployment).where(Deployment.suggestion_id == s.id)
                               .order_by(col(Deployment.id))).all()
    baseline, candidate_version = PromptVersionPublic.of(session, [
        session.get(PromptVersion, s.baseline_version_id), session.get(PromptVersion, s.candidate_version_id)])
    watch = session.exec(select(Watch).where(Watch.suggestion_id == s.id)).first()
    return SuggestionDetail.model_validate({
        **SuggestionPublic.model_validate(s).model_dump(), "evidence": s.evidence,
        "prompt_name": prompt.name if prompt else "?", "baseline": baseline, "candidate": candidate_version,
        "moves": candidate.moves if candidate else [], "reviews": reviews, "deployments": deployments,
        "watch": WatchPublic.model_validate(watch) if watch else None})


@router.get("/{suggestion_id}/items", response_model=SuggestionItems,
            summary="the holdout items behind the evidence: both arms' output, scores, tokens, cost, latency")
def list_items(suggestion_id: int, session: SessionDep, _: Reader,
               differing: bool = Query(False, description="only items where the outputs differ"),
               limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> SuggestionItems:
    s = store.get_suggestion(session=session, suggestion_id=suggestion_id)
    base_id, cand_id = s.evidence.baseline_eval_run_id, s.evidence.candidate_eval_run_id
    if base_id is None or cand_id is None:
        raise NotFound(f"suggestion {suggestion_id} has no stored per-item results: it was certified before "
                       "trimloop kept them", where=f"suggestion {suggestion_id}",
                       hint="its evidence lists up to 20 differing items; a new run of the prompt stores every item")
    pairs = [p for p in item_pairs(session, base_id, cand_id) if p.differs or not differing]

    def trial(r: ItemResult) -> TrialPublic:
        return TrialPublic.model_validate({k: v for k, v in asdict(r).items() if k in TrialPublic.model_fields})

    return SuggestionItems(
        suggestion_id=suggestion_id, baseline_eval_run_id=base_id, candidate_eval_run_id=cand_id, total=len(pairs),
        items=[ItemPairPublic(item_id=p.item_id, inputs=p.inputs, expected=p.expected, differs=p.differs,
                              baseline=trial(p.baseline) if p.baseline else None,
                              candidate=[trial(r) for r in p.candidate])
               for p in pairs[offset:offset + limit]])


@router.post("/{suggestion_id}/approve", response_model=SuggestionPublic, summary="approve (idempotent)")
def approve(suggestion_id: int, request: Request, tasks: BackgroundTasks, session: SessionDep,
            who: Reviewer) -> Suggestion:
    before = store.get_suggestion(session=session, suggestion_id=suggestion_id).status
    suggestion = store.approve_suggestion(session=session, suggestion_id=suggestion_id, reviewer=who.actor)
    if before == "pending":
        _announce(tasks, request, "suggestion.approved", suggestion)
    return suggestion


@router.post("/{suggestion_id}/reject", response_model=SuggestionPublic, summary="reject, with a reason")
def reject(suggestion_id: int, body: RejectRequest, session: SessionDep, who: Reviewer) -> Suggestion:
    return store.reject_suggestion(session=session, suggestion_id=suggestion_id, reviewer=who.actor,
                                   reason=body.reason)


@router.post("/{suggestion_id}/deploy", response_model=DeploymentPublic,
             summary="write the version to the prompt store under `staging` (idempotent)")
def deploy(suggestion_id: int, request: Request, tasks: BackgroundTasks, session: SessionDep,
           settings: SettingsDep, who: Operator) -> Deployment:
    before = store.get_suggestion(session=session, suggestion_id=suggestion_id).status
    deployment = write_back.deploy(session=session, settings=settings, suggestion_id=suggestion_id,
                                   actor=who.actor)
    if before == "approved":
        _announce(tasks, request, "suggestion.deployed",
                  store.get_suggestion(session=session, suggestion_id=suggestion_id))
    return deployment


@router.post("/{suggestion_id}/promote", response_model=DeploymentPublic,
             summary="move `production` to the deployed version (idempotent)")
def promote(suggestion_id: int, session: SessionDep, settings: SettingsDep, who: Operator) -> Deployment:
    return write_back.promote(session=session, settings=settings, suggestion_id=suggestion_id, actor=who.actor)


@router.post("/{suggestion_id}/rollback", response_model=DeploymentPublic,
             summary="move `production` back to the baseline version")
def rollback(suggestion_id: int, session: SessionDep, settings: SettingsDep, who: Operator) -> Deployment:
    return write_back.rollback(session=session, settings=settings, suggestion_id=suggestion_id, actor=who.actor)


@router.get("/{suggestion_id}/watch", response_model=WatchPublic,
            summary="the post-deploy watch: verdict and the numbers of its last check")
def get_watch(suggestion_id: int, session: SessionDep, _: Reader) -> Watch:
    s = store.get_suggestion(session=session, suggestion_id=suggestion_id)
    watch = session.exec(select(Watch).where(Watch.suggestion_id == s.id)).first()
    if watch is None:
        raise NotFound(f"suggestion {suggestion_id} has no watch: it is {s.status}",
                       where=f"suggestion {suggestion_id}",
                       hint="a watch starts at the first sync after the suggestion is deployed (POST .../deploy)")
    return watch
