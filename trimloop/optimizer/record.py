"""Store what a run found: candidate versions with their lineage, the holdout trials of every arm
certification tested (EvalRuns), and the Suggestion's evidence."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, delete, select

from trimloop.core.catalog import ResolvedModel
from trimloop.core.evidence import (
    CandidateScores,
    CertificationOutcome,
    ControlArm,
    LatencyClaim,
    Deadline,
    Evidence,
    HealthReport,
    LineageStep,
    RunResults,
    SearchSummary,
    Verdict,
)
from trimloop.core.status import CandidateStatus, SuggestionKind, SuggestionStatus
from trimloop.core.tables import Candidate, EvalResult, EvalRun, PromptVersion, Suggestion
from trimloop.evals.feedback import feedback_summary
from trimloop.evals.latency import claim_line, ttft_summary
from trimloop.evals.runner import ItemResult, samples_for, store_eval_run
from trimloop.optimizer.baseline import LogFacts
from trimloop.optimizer.caching import CacheModel, PricedPairs, price_pairs
from trimloop.optimizer.certify import Certification
from trimloop.optimizer.context import RunContext
from trimloop.optimizer.evidence import changes, differing_items
from trimloop.optimizer.race import Arm
from trimloop.optimizer.repair import summary as repair_summary
from trimloop.optimizer.savings import project
from trimloop.optimizer.spec import VersionSpec


def version_row(session: Session, *, prompt_id: int, version: VersionSpec) -> PromptVersion:
    """The PromptVersion with this content (created, unlabelled, when new)."""
    row = session.exec(select(PromptVersion).where(PromptVersion.prompt_id == prompt_id,
                                                   PromptVersion.sha == version.sha)).first()
    if row is None:
        row = PromptVersion(prompt_id=prompt_id, sha=version.sha, template=version.template.dump(),
                            model=version.model, params=version.params, connector="trimloop")
        session.add(row)
        session.flush()
    return row


def record_candidates(session: Session, *, run_id: int, prompt_id: int, baseline_id: int,
                      arms: Sequence[Arm], certified: dict[str, Certification]) -> dict[str, int]:
    """One Candidate row per raced arm; returns sha → candidate id."""
    ids = {}
    for arm in arms:
        version = version_row(session, prompt_id=prompt_id, version=arm.candidate.version)
        cert = certified.get(arm.candidate.sha)
        status = (CandidateStatus.certified if cert.passed else CandidateStatus.not_certified) if cert else arm.status
        scores = CandidateScores.model_validate(arm.summary())
        if cert:
            scores.certification = CertificationOutcome(passed=cert.passed, reason=cert.reason)
        row = Candidate(
            run_id=run_id, version_id=version.id, parent_version_id=baseline_id,
            moves=list(arm.candidate.lineage), status=status, scores=scores,
            cost_per_call=arm.cost_per_call, latency_p50_s=arm.latency_p50,
        )
        session.add(row)
        session.flush()
        ids[arm.candidate.sha] = row.id
    return ids


def record_evaluations(session: Session, *, run_id: int, prompt_id: int, dataset_id: int, baseline_id: int,
                       run: RunContext, certs: Sequence[Certification],
                       candidate_ids: dict[str, int]) -> dict[str, int]:
    """The holdout as certification saw it, one EvalRun per arm: the baseline on every holdout
    item, and each tested candidate on the items it was tested on (all samples), with the test's
    α and margins in its summary. Returns sha → EvalRun id ("baseline" for the baseline's).
    A run that resumes after recording replaces its earlier EvalRuns."""
    earlier = session.exec(select(EvalRun.id).where(EvalRun.run_id == run_id)).all()
    if earlier:
        session.exec(delete(EvalResult).where(col(EvalResult.eval_run_id).in_(earlier)))  # type: ignore[call-overload]
        session.exec(delete(EvalRun).where(col(EvalRun.id).in_(earlier)))  # type: ignore[call-overload]
    expected = {i.id: i.expected for i in run.holdout_items}
    common = dict(dataset_id=dataset_id, split="holdout", evaluators=run.evaluators, run_id=run_id, expected=expected)
    ids = {"baseline": store_eval_run(session, version_id=baseline_id, samples=1,
                                      results=[run.baseline_results[i.id] for i in run.holdout_items],
                                      summary={"role": "baseline"}, **common).id}
    for cert in certs:
        candidate = cert.arm.candidate
        version = version_row(session, prompt_id=prompt_id, version=candidate.version)
        if cert.control is not None:  # the baseline re-run beside it: the side its evidence compares with
            ids[f"control:{candidate.sha}"] = store_eval_run(
                session, version_id=baseline_id, samples=samples_for(run.baseline.params, run.samples),
                results=cert.control.flat(), summary={"role": "control", "sha": candidate.sha}, **common).id
        test = {"alpha": cert.alpha, "margin": run.margin, "margins": {k: run.margin_of(k) for k in run.keys},
                **({"test": "superiority"} if run.repair else {}),  # at margin −min_effect
                "passed": cert.passed, "reason": cert.reason, "n_planned": cert.n_planned, "n_wanted": cert.n_wanted}
        ids[candidate.sha] = store_eval_run(
            session, version_id=version.id, samples=samples_for(candidate.version.params, run.samples),
            results=cert.results.flat(), summary={"role": "candidate", "candidate_id": candidate_ids.get(candidate.sha),
                                                  "sha": candidate.sha, "label": candidate.label,
                                                  "certification": test}, **common).id
    return ids


def record_suggestion(
    session: Session, *, run_id: int, prompt_id: int, baseline_id: int, run: RunContext,
    cert: Certification, candidate_id: int, facts: LogFacts, spend: float, now: datetime,
    window_days: int, search: RunResults, resolve: Callable[[str], ResolvedModel],
    feedback: dict[Any, list[dict[str, Any]]] | None = None, eval_runs: dict[str, int] | None = None,
    deadline: Deadline | None = None, repair: tuple[float, HealthReport | None] | None = None,
) -> Suggestion:
    """The pending Suggestion for a certified candidate, with its evidence and savings projected
    (and, on a migration off a retiring model, the `deadline`; on a repair, `repair` = (min effect,
    the baseline's health): kind `repair`, with the gain and the cost change)."""
    baseline, base, holdout, evaluators = run.baseline, run.baseline_results, run.holdout_items, run.evaluators
    candidate = cert.arm.candidate
    version = version_row(session, prompt_id=prompt_id, version=candidate.version)
    items = [i for i in holdout if i.id in cert.results]
    pairs = [(base[i.id].cost, sum(r.cost for r in cert.results[i.id]) / len(cert.results[i.id])) for i in items]
    priced = _cache_aware(items, base, cert, baseline, candidate.version, facts, resolve)
    logged = facts.logged_costs or [b for b, _ in pairs]
    savings = project(
        call_times=facts.call_times, call_weights=facts.call_weights, logged_costs=logged,
        cost_weights=facts.cost_weights if facts.logged_costs else None,
        # with the control arm, the baseline's latency is its fresh one beside the candidate, not the logged one
        baseline_latencies=[r.latency_s for r in cert.control.flat() if r.error is None and r.item_id in cert.results]
        if cert.control is not None else facts.latencies or [base[i.id].latency_s for i in items], paired_costs=priced.pairs if priced else pairs,
        candidate_latencies=[r.latency_s for i in items for r in cert.results[i.id] if r.error is None],
        optimization_spend=spend, now=now, window_days=window_days,
        naive_costs=priced.naive if priced else None,
        cached_share_before=priced.cached_share_before if priced else None,
        cached_share_after=priced.cached_share_after if priced else None,
        cache_note=priced.note if priced else None,
    )
    if priced is not None:
        savings.saving_share = priced.saving_share()
    tokens_before, tokens_after = _means(items, base, cert, "input_tokens")
    evidence = Evidence(
        kind=(SuggestionKind.repair if repair is not None else SuggestionKind.latency
              if run.objective is not None and run.objective.kind == "latency" else SuggestionKind.cost),
        repair=repair_summary(cert=cert, min_effect=repair[0], alpha=cert.alpha, savings=savings, health=repair[1])
        if repair is not None else None,
        changes=changes(baseline, candidate.version),
        lineage=[LineageStep.model_validate(step) for step in candidate.lineage],
        evaluators={k: Verdict.model_validate(e.to_dict()) for k, e in cert.evidence.items()},
        verdict=cert.reason,
        n=cert.n_planned,
        n_wanted=cert.n_wanted,
        prompt_tokens=[tokens_before, tokens_after],
        output_tokens=list(_means(items, base, cert, "output_tokens")),
        reasoning_tokens=list(_means(items, base, cert, "reasoning_tokens")),
        differing_items=differing_items(items, base, cert.results),
        savings=savings,
        search=SearchSummary(search_calls=search.search_calls, candidates=search.candidates,
                             budget_exhausted=search.budget_exhausted, notes=search.notes),
        price_sources={m: resolve(m).price_source for m in {baseline.model, candidate.version.model}},
        prices={m: price_table(resolve(m)) for m in {baseline.model, candidate.version.model}},
        deadline=deadline,
        evaluator_config=[n.key for n in evaluators],
        baseline_feedback=feedback_summary((feedback or {}).get(i.id) for i in items),
        baseline_eval_run_id=(eval_runs or {}).get(f"control:{candidate.sha}", (eval_runs or {}).get("baseline")),
        control=control_arm(cert, search, (eval_runs or {}).get(f"control:{candidate.sha}")),
        latency=latency_claim(cert, run, savings.baseline_cost_per_call, savings.candidate_cost_per_call),
        candidate_eval_run_id=(eval_runs or {}).get(candidate.sha),
    )
    suggestion = Suggestion(
        prompt_id=prompt_id, run_id=run_id, candidate_id=candidate_id, baseline_version_id=baseline_id,
        candidate_version_id=version.id, candidate_sha=candidate.sha, status=SuggestionStatus.pending,
        evidence=evidence,
        baseline_cost_per_call=savings.baseline_cost_per_call,
        candidate_cost_per_call=savings.candidate_cost_per_call,
        baseline_latency_p50_s=savings.baseline_latency_p50_s,
        candidate_latency_p50_s=savings.candidate_latency_p50_s,
        projected_monthly_savings=savings.monthly, savings_low=savings.monthly_low,
        savings_high=savings.monthly_high, optimization_spend=spend, payback_days=savings.payback_days,
        retires_on=deadline.retires_on if deadline is not None else None,
        kind=evidence.kind,
    )
    session.add(suggestion)
    session.flush()
    return suggestion


def control_arm(cert: Certification, search: RunResults, eval_run_id: int | None) -> ControlArm | None:
    """What the control arm did for this suggestion: its calls, and how often it agreed with the logs."""
    if cert.control is None:
        return None
    ran = search.control
    tested = [r for r in cert.control.flat() if r.item_id in cert.results and r.error is None]
    keys = sorted({k for r in tested for k in r.scores})
    return ControlArm(on=True, reason=ran.reason if ran else "", calls=ran.calls if ran else cert.control_calls,
                      items=len({r.item_id for r in tested}), eval_run_id=eval_run_id,
                      agreement={k: sum(r.scores.get(k, 0.0) for r in tested) / len(tested) for k in keys} if tested else {})


def latency_claim(cert: Certification, run: RunContext, cost_before: float | None,
                  cost_after: float | None) -> LatencyClaim | None:
    """The certification's latency test, in the evidence's words ("p95 1.9 s → 1.1 s, −42 %, cost +3 %")."""
    test = cert.latency
    if test is None:
        return None
    cost_change = cost_after / cost_before - 1 if cost_before and cost_after is not None else None
    ttft = ttft_summary(cert.control.flat(), cert.results.flat()) if cert.control is not None else None
    return LatencyClaim(objective=run.objective.describe() if run.objective is not None else "", stat=test.stat,
                        n=test.n, before_s=test.before_s, after_s=test.after_s, ratio=test.ratio,
                        ratio_upper=test.ratio_upper, min_effect=test.min_effect, alpha=test.alpha,
                        method=test.method, passed=test.passed, cost_change=cost_change,
                        line=claim_line(test, cost_change),
                        ttft_p50_s=list(ttft.p50_s) if ttft else None, ttft_p95_s=list(ttft.p95_s) if ttft else None,
                        ttft_n=ttft.n if ttft else None)


def _cache_aware(items: Sequence[Any], base: Mapping[Any, ItemResult], cert: Certification,
                 baseline: VersionSpec, candidate: VersionSpec, facts: LogFacts,
                 resolve: Callable[[str], ResolvedModel]) -> PricedPairs | None:
    """The holdout's baseline and candidate costs priced as the provider bills them, the baseline's
    observed prompt-cache behaviour carried over (optimizer.caching); None when a price is unknown."""
    tokens = []
    for item in items:
        results = cert.results[item.id]
        b = base[item.id]
        tokens.append(((b.input_tokens, b.output_tokens, b.reasoning_tokens),
                       (sum(r.input_tokens for r in results) / len(results),
                        sum(r.output_tokens for r in results) / len(results),
                        sum(r.reasoning_tokens for r in results) / len(results))))
    if not tokens:
        return None
    base_model, cand_model = resolve(baseline.model), resolve(candidate.model)
    cache = CacheModel.learn(facts.cache, baseline=base_model, template=baseline.template,
                             call_times=facts.call_times, params=baseline.params)
    return price_pairs(tokens, cache=cache, baseline=(base_model, baseline.template),
                       candidate=(cand_model, candidate.template), params=(baseline.params, candidate.params))


def _means(items: Sequence[Any], base: Mapping[Any, ItemResult], cert: Certification, name: str) -> tuple[float, float]:
    """The mean of one token count over the holdout items: the baseline's, the candidate's (all samples)."""
    before = sum(getattr(base[i.id], name) for i in items) / max(1, len(items))
    after = [getattr(r, name) for i in items for r in cert.results[i.id]]
    return before, sum(after) / max(1, len(after))


def price_table(model: ResolvedModel) -> dict[str, str]:
    """Each token class's price per 1M tokens and where it came from, for the evidence."""
    return {name: f"{rate.per_mtok()} ({rate.source})" for name, rate in model.prices.rates().items()}
