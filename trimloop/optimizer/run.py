"""One optimization run for one prompt, from queued to a Suggestion (or a reason why not).

build the dataset from the production version's logs → score the baseline's logged outputs
(free) → check the baseline is not broken (evals.health; else end `baseline_unhealthy`, unless
forced or a repair) → search on the search split → certify the best on the holdout → project savings → store
candidates, the holdout results of every arm certification tested (EvalRuns), events and at most
one Suggestion (the cheapest certified candidate). A repair run (`repair = true`,
optimizer.repair) searches with the moves that raise quality, at any cost, and certifies with
the superiority test; its suggestion is of kind `repair`. Before any of that, the preflight
(optimizer.preflight) checks what would doom the run — an unpriced baseline model, too few
distinct inputs, no usable quality signal, no usable candidate model — and on a problem the run
ends `blocked`, having spent nothing, with the findings in its results. The run is
resumable: a rerun after a crash repays nothing, thanks to the gateway's cache, and starts its
ledger at what the earlier attempt spent, so the run's caps hold across crashes. A provider that
keeps failing after the gateway's retries fails the run with that reason (a failed call is not
evidence against a candidate). Cancellation (status set to `cancelled`) is honoured between steps.
"""

from __future__ import annotations

import logging
import socket
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from trimloop.core.db import session_scope
from trimloop.core.errors import Conflict, NotFound, ProviderUnavailable, TrimloopError
from trimloop.core.evidence import CertificationSummary, Deadline, Migration, RunResults, Verdict
from trimloop.core.ledger import Ledger
from trimloop.core.retirement import Retirement, retiring, split_retiring, today_of
from trimloop.core.settings import Settings
from trimloop.core.status import RUN_ACTIVE, RUN_DONE, HealthVerdict, RunStatus, SuggestionStatus
from trimloop.core.tables import (
    CachedResponse,
    Dataset,
    OptimizationRun,
    Prompt,
    RunEvent,
    Suggestion,
    utcnow,
)
from trimloop.evals.datasets import build_from_logs, dataset_items, default_evaluators, production_version
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.feedback import feedback_summary
from trimloop.evals.health import baseline_check, parse_health
from trimloop.evals.runner import EvalItem
from trimloop.optimizer import preflight
from trimloop.optimizer import repair as repairs
from trimloop.optimizer.baseline import baseline_results, log_facts
from trimloop.optimizer.caching import CacheModel
from trimloop.optimizer.certify import certify
from trimloop.optimizer.config import default_candidate_models, run_config
from trimloop.optimizer.context import RunContext
from trimloop.optimizer.moves.trim_output import answer_of, output_facts
from trimloop.optimizer.objective import control_wanted, objective_of
from trimloop.optimizer.record import record_candidates, record_evaluations, record_suggestion
from trimloop.optimizer.search import SearchConfig, search
from trimloop.optimizer.spec import MoveContext, VersionSpec

log = logging.getLogger("trimloop.optimizer.run")


class Cancelled(Exception):
    pass


class BaselineUnhealthy(Exception):
    """The baseline is broken (evals.health): the run ends `baseline_unhealthy` without searching."""

    def __init__(self, results: RunResults):
        super().__init__(results.no_suggestion)
        self.results = results


class Blocked(Exception):
    """The preflight found a problem: the run stops before spending anything."""

    def __init__(self, findings: list[preflight.Finding]):
        super().__init__(findings[0].message)
        self.findings = findings


class Reclaimed(Exception):
    """Another worker took the run over (this one looked dead); it carries on there."""


def create_run(*, session: Session, prompt_id: int, config: dict[str, Any] | None = None,
               budget_calls: int | None = None, budget_dollars: float | None = None) -> OptimizationRun:
    """A queued run; refused (Conflict) while another run of the prompt is queued or running."""
    busy = session.exec(select(OptimizationRun).where(
        OptimizationRun.prompt_id == prompt_id, col(OptimizationRun.status).in_(RUN_ACTIVE))).first()
    if busy is not None:
        raise Conflict(f"run {busy.id} of this prompt is already {busy.status}", where=f"prompt {prompt_id}",
                       hint="wait for it, or cancel it first")
    run = OptimizationRun(prompt_id=prompt_id, config=dict(config or {}), budget_calls=budget_calls,
                          budget_dollars=budget_dollars)
    session.add(run)
    session.flush()
    session.add(RunEvent(run_id=run.id, kind="run.queued", data={"config": run.config}))
    return run


class _Recorder:
    """Writes run events and progress; raises Cancelled when someone cancelled the run."""

    def __init__(self, engine: Engine, run_id: int, ledger: Ledger, worker: str):
        self.engine, self.run_id, self.ledger, self.worker = engine, run_id, ledger, worker

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with session_scope(self.engine) as session:
            run = session.get(OptimizationRun, self.run_id)
            if run is not None and run.worker not in (None, self.worker):
                raise Reclaimed(f"run {self.run_id} was reclaimed by {run.worker}")
            session.add(RunEvent(run_id=self.run_id, kind=kind, data=_jsonable(data)))
            if run is not None:
                run.calls_made, run.spent_dollars = self.ledger.calls, self.ledger.spent
                run.heartbeat_at = utcnow()
                status = run.status
        if status == RunStatus.cancelled:
            raise Cancelled()


async def execute_run(*, engine: Engine, settings: Settings, run_id: int, gateway: Any,
                      now: datetime | None = None, worker: str | None = None) -> OptimizationRun:
    """Run (or resume) one optimization run; never raises for a run that fails: it records why.

    `worker` names the claimant (see optimizer.queue); default: this host's name."""
    with session_scope(engine) as session:
        run = session.get(OptimizationRun, run_id)
        if run is None:
            raise NotFound(f"no optimization run {run_id}", hint="list runs with GET /runs")
        if run.status in RUN_DONE:
            return run
        resumed = run.started_at is not None  # an earlier attempt died (or was stopped) mid-run
        run.status, run.started_at = RunStatus.running, run.started_at or utcnow()
        me = run.worker = worker or socket.gethostname()
        run.heartbeat_at = utcnow()
        prompt = session.get(Prompt, run.prompt_id)
        assert prompt is not None
        prompt_name, prompt_id, overrides = prompt.name, prompt.id, dict(run.config)
        budget_calls, budget_dollars = run.budget_calls, run.budget_dollars
        ledger = Ledger(name=f"run {run_id}", run_id=run_id)
        if resumed:
            # What the earlier attempts paid: their last recorded progress, or the responses they
            # committed to the cache (each names the run that paid), whichever is further along.
            paid_calls, paid_dollars = session.exec(
                select(func.count(), func.coalesce(func.sum(CachedResponse.cost), 0.0))
                .where(CachedResponse.run_id == run_id)).one()
            ledger.calls = max(run.calls_made or 0, int(paid_calls))
            ledger.spent = max(run.spent_dollars or 0.0, float(paid_dollars))
    emit = _Recorder(engine, run_id, ledger, me)
    try:
        if resumed:
            emit("run.resumed", {"worker": me, "calls_before": ledger.calls, "spent_before": ledger.spent,
                                 "note": "calls the earlier attempt paid for are answered from the cache"})
        config = run_config(settings, prompt_name, overrides)
        ledger.max_calls = budget_calls if budget_calls is not None else config.budget_calls
        ledger.max_dollars = budget_dollars if budget_dollars is not None else config.budget_dollars
        emit("run.started", {"prompt": prompt_name, "config": config.model_dump(mode="json"),
                             "budget_calls": ledger.max_calls, "budget_dollars": ledger.max_dollars})
        with session_scope(engine) as session:
            findings = preflight.check_prompt(session, settings=settings, prompt_id=prompt_id, overrides=overrides)
        emit("run.preflight", {"findings": [preflight.record(f).model_dump(mode="json") for f in findings]})
        if preflight.problems(findings):
            raise Blocked(findings)
        results = await _optimize(engine=engine, settings=settings, run_id=run_id, prompt_id=prompt_id,
                                  prompt_name=prompt_name, config=config, gateway=gateway,
                                  ledger=ledger, emit=emit, now=now or utcnow(), findings=findings)
        status, error = RunStatus.succeeded, None
    except Cancelled:
        status, error, results = RunStatus.cancelled, None, RunResults(note="cancelled")
    except BaselineUnhealthy as exc:
        status, error, results = RunStatus.baseline_unhealthy, None, exc.results
    except Blocked as exc:
        status, results = RunStatus.blocked, RunResults(findings=[preflight.record(f) for f in exc.findings])
        error = f"blocked before any spending: {exc.findings[0].message}"
    except Reclaimed:
        with session_scope(engine) as session:
            return session.get(OptimizationRun, run_id)  # type: ignore[return-value]
    except ProviderUnavailable as exc:
        status, error, results = RunStatus.failed, f"the model provider kept failing, so the run stopped: {exc}", RunResults()
    except TrimloopError as exc:
        status, error, results = RunStatus.failed, str(exc), RunResults()
    except Exception as exc:  # a bug: the traceback (server paths) goes to the server log, viewers get a line
        log.exception("run %s failed on an unexpected error", run_id)
        status, results = RunStatus.failed, RunResults()
        error = (f"run {run_id} stopped on an internal error ({exc.__class__.__name__}); the server log has the "
                 "details — report it with that log")
    with session_scope(engine) as session:
        run = session.get(OptimizationRun, run_id)
        assert run is not None
        if run.status == RunStatus.cancelled:
            status = RunStatus.cancelled
        run.status, run.error, run.results = status, error, results
        run.calls_made, run.spent_dollars = ledger.calls, ledger.spent
        run.finished_at = utcnow()
        session.add(RunEvent(run_id=run_id, kind=f"run.{status.value}",
                             data={"error": error, "calls": ledger.calls, "spent": ledger.spent,
                                   "cache_hits": ledger.cache_hits}))
    with session_scope(engine) as session:
        return session.get(OptimizationRun, run_id)  # type: ignore[return-value]


async def _optimize(*, engine: Engine, settings: Settings, run_id: int, prompt_id: int, prompt_name: str,
                    config: Any, gateway: Any, ledger: Ledger, emit: Any, now: datetime,
                    findings: list[preflight.Finding]) -> RunResults:
    with session_scope(engine) as session:
        version_row = production_version(session, prompt_id)
        if config.dataset is not None:
            dataset = session.get(Dataset, config.dataset)
            if dataset is None or dataset.prompt_id != prompt_id:
                raise NotFound(f"no dataset {config.dataset} of prompt {prompt_name!r}",
                               where=f"the run's config.dataset ({config.dataset})",
                               hint="GET /datasets?prompt=… lists them; import a gold set with POST /datasets/import")
        else:
            dataset = build_from_logs(session, prompt_id=prompt_id, version_id=version_row.id,
                                      size=config.dataset_size, holdout_fraction=config.holdout_fraction,
                                      seed=config.seed, expected_from=config.expected_from)
        rows = dataset_items(session, dataset.id)
        facts = log_facts(session, rows, prompt_id=prompt_id)
        rejected = frozenset(session.exec(select(Suggestion.candidate_sha).where(
            Suggestion.prompt_id == prompt_id, Suggestion.status == SuggestionStatus.rejected)).all())
        baseline = VersionSpec.of(version_row)
        baseline_id, dataset_id = version_row.id, dataset.id
        gold_from = (f"feedback {config.expected_from!r}" if config.expected_from
                     else f"gold set {dataset.name!r}" if dataset.source == "import" else None)
        feedback = {r.id: list(r.feedback or []) for r in rows}
    without_gold = [r for r in rows if r.expected is None]
    if config.expected_from and without_gold:
        # Items no one labelled cannot be scored against gold answers: leave them out, and say so.
        rows = [r for r in rows if r.expected is not None]
        if not rows:
            raise NotFound(f"no log of prompt {prompt_name!r} carries feedback named {config.expected_from!r}",
                           where=f"[prompts.{prompt_name}].expected_from",
                           hint="check the feedback name in your logs, or remove expected_from to compare "
                           "against the baseline's own outputs")
    items = {split: [EvalItem(id=r.id, inputs=r.inputs, expected=r.expected, baseline_output=r.baseline_output)
                     for r in rows if r.split == split] for split in ("search", "holdout")}
    evaluators = build_evaluators(config.evaluators or default_evaluators(rows),
                                  where=f"[prompts.{prompt_name}].evaluators")
    resolve = preflight.resolver(settings, findings)  # prices the baseline from its logs when nothing else does
    emit("dataset.ready", {"dataset_id": dataset_id, "search": len(items["search"]),
                           "left_out_without_gold": len(without_gold) if config.expected_from else 0,
                           "holdout": len(items["holdout"]), "evaluators": [n.key for n in evaluators]})
    base = await baseline_results(rows, facts, baseline, evaluators, resolve=resolve, gateway=gateway,
                                  ledger=ledger, concurrency=config.concurrency)
    baseline_calls = ledger.calls
    health = baseline_check([(base[r.id].output, r.expected) for r in rows], evaluators,  # type: ignore[index]
                            parse_health(config.health, where=f"[prompts.{prompt_name}].health"),
                            dataset_id=dataset_id, gold_from=gold_from)
    emit("baseline.health", {"verdict": health.verdict, "reasons": health.reasons, "forced": config.force})
    if health.verdict == HealthVerdict.broken:
        if not config.force and not config.repair:
            why = "the baseline is broken, so the run did not search for cheaper variants of it: " + \
                "; ".join(health.reasons) + " (search for a repair: trimloop optimize NAME --repair / config.repair = " \
                "true; fix the prompt yourself; or force a cost search: --force / config.force = true)"
            emit("run.baseline_unhealthy", {"reason": why})
            raise BaselineUnhealthy(RunResults(dataset_id=dataset_id, baseline_calls=baseline_calls, search_calls=0,
                                               certify_calls=0, calls=ledger.calls, spent=ledger.spent,
                                               baseline_health=health, no_suggestion=why))
    answers: list[str] = []
    if config.repair:
        repairs.check_signal(evaluators, prompt_name=prompt_name)
        answers = repairs.allowed_answers(evaluators, [r.expected for r in rows])
        emit("repair.started", {"health": health.verdict, "min_effect": config.min_effect,
                                "min_effects": dict(config.min_effects), "answers": answers})
    today = today_of(now)
    leaving = retiring(settings, baseline.model, today)
    models, left_out = split_retiring(settings, config.models or default_candidate_models(settings), today)
    notes = [f"left out retiring candidate models: {'; '.join(r.words(today) for r in left_out.values())}"] \
        if left_out else []
    if leaving is not None:
        notes.insert(0, f"migration: {leaving.words(today)}; every candidate is on another model, at any cost")
        emit("run.migration", {"model": leaving.model, "retires_on": leaving.retires_on.isoformat(),
                               "left_out": sorted(left_out)})
    context = MoveContext(models=models, resolve=resolve,
                          seed=config.seed, gateway=gateway, ledger=ledger,
                          proposer_model=config.proposer_model, migrate=leaving is not None,
                          repair=config.repair, answers=answers,
                          examples=repairs.examples(items["search"], answers, seed=config.seed) if answers else [],
                          outputs=output_facts([base[i.id] for i in items["search"]], [n.key for n in evaluators]),
                          answer=answer_of(evaluators),
                          cache=CacheModel.learn(facts.cache, baseline=resolve(baseline.model), template=baseline.template,
                                                 call_times=facts.call_times, params=baseline.params))
    # A repair's test is superiority by min_effect: the same test at margin −min_effect (evals.stats).
    margin, margins = ((-config.min_effect, {k: -v for k, v in config.min_effects.items()}) if config.repair
                       else (config.margin, dict(config.margins)))
    objective = objective_of(config)
    use_control, control_why = control_wanted(config.control, objective, baseline_model=baseline.model,
                                              params=baseline.params, evaluators=evaluators,
                                              retiring=leaving is not None)
    emit("run.control", {"on": use_control, "reason": control_why, "objective": objective.describe()})
    run = RunContext(baseline=baseline, search_items=items["search"], holdout_items=items["holdout"],
                     baseline_results=base, evaluators=evaluators, gateway=gateway, ledger=ledger, emit=emit,
                     margin=margin, alpha=config.alpha, margins=margins, power=config.power,
                     samples=config.samples, concurrency=config.concurrency, seed=config.seed, repair=config.repair,
                     control=use_control, control_scope=f"control of run {run_id}",
                     candidate_scope=f"run {run_id}" if objective.measures_latency else None, objective=objective)
    never = frozenset(left_out) | ({baseline.model} if leaving is not None else set())
    found = await search(run=run, context=context, exclude=rejected,
                         config=SearchConfig(rungs=config.rungs, eta=config.eta, max_candidates=config.max_candidates,
                                             max_calls=config.search_budget_calls, migrate=leaving is not None,
                                             repair=config.repair, exclude_models=never, objective=objective,
                                             rewrite_share=config.rewrite_share))
    found.notes[:0] = notes
    search_calls = ledger.calls
    # A migration keeps the search's order (chance of holding quality first); otherwise by saving.
    certs = await certify(ranked=found.ranked, run=run, top=config.certify_top,
                          baseline_cost=None if leaving is not None or config.repair or objective.kind == "latency"
                          else found.baseline_cost)
    with session_scope(engine) as session:
        ids = record_candidates(session, run_id=run_id, prompt_id=prompt_id, baseline_id=baseline_id,
                                arms=found.arms, certified={c.arm.candidate.sha: c for c in certs})
        eval_runs = record_evaluations(session, run_id=run_id, prompt_id=prompt_id, dataset_id=dataset_id,
                                       baseline_id=baseline_id, run=run, certs=certs, candidate_ids=ids)
    passed = [c for c in certs if c.passed]
    found_summary: dict[str, Any] = {
        "dataset_id": dataset_id, "baseline_calls": baseline_calls, "search_calls": search_calls - baseline_calls, "certify_calls": ledger.calls - search_calls,
        "calls": ledger.calls, "spent": ledger.spent, "cache_hits": ledger.cache_hits,
        # Calls asked for, whether paid or answered from the cache (an earlier run's answers):
        "search_requests": found.calls, "certify_requests": sum(c.calls for c in certs),
        "candidates": len(found.arms), "budget_exhausted": found.budget_exhausted,
        "front": [a.candidate.sha for a in found.front], "notes": found.notes,
        "certifications": [{"sha": c.arm.candidate.sha, "label": c.arm.candidate.label, "passed": c.passed,
                            "reason": c.reason, "n": c.n_planned, "wanted": c.n_wanted,
                            "eval_run_id": eval_runs[c.arm.candidate.sha]} for c in certs],
        "baseline_scores": {n.key: _mean([base[i.id].scores.get(n.key, 0.0) for i in items["holdout"]])
                            for n in evaluators},
        "baseline_feedback": feedback_summary(feedback.values()),
        "baseline_health": health.model_dump(mode="json", exclude_none=True),
        "objective": objective.describe(),
        "control": {"on": use_control, "reason": control_why,
                    "calls": found.control_calls + sum(c.control_calls for c in certs)},
    }
    summary = RunResults.model_validate(_jsonable(found_summary))
    if leaving is not None:
        summary.migration = migration_outcome(leaving, today, left_out, certs, found.ranked or found.arms)
    summary.findings = [preflight.record(f) for f in findings]
    if config.repair:
        summary.repair = repairs.outcome(certs=certs, arms=found.arms, min_effect=config.min_effect,
                                         notes=[n for n in found.notes if n not in notes])
    if not passed:
        why = [n for n in found.notes if n not in notes] or [c.reason for c in certs] or ["no candidate survived the search"]
        summary.no_suggestion = "no suggestion, because " + "; ".join(why)
        if summary.migration is not None:
            summary.no_suggestion = f"{summary.migration.message}; {'; '.join(why)}"
        if summary.repair is not None:
            summary.no_suggestion = summary.repair.message
        emit("run.no_suggestion", {"reason": summary.no_suggestion})
        return summary
    best = passed[0]
    with session_scope(engine) as session:
        suggestion = record_suggestion(
            session, run_id=run_id, prompt_id=prompt_id, baseline_id=baseline_id, run=run,
            cert=best, candidate_id=ids[best.arm.candidate.sha], facts=facts, spend=ledger.spent, now=now,
            window_days=config.window_days, search=summary, resolve=resolve, feedback=feedback, eval_runs=eval_runs,
            deadline=summary.migration.deadline if summary.migration is not None else None,
            repair=(config.min_effect, health) if config.repair else None,
        )
        summary.suggestion_id = suggestion.id
        summary.suggestion_cut = suggestion.claim
    emit("suggestion.created", {"suggestion_id": summary.suggestion_id, "sha": best.arm.candidate.sha})
    return summary


def migration_outcome(leaving: Retirement, today: Any, left_out: dict[str, Retirement], certs: list[Any],
                      arms: list[Any]) -> Migration:
    """What a migration run tells the person who must act: the deadline, the models left out, and
    the best candidate's evidence: its certification, else its race on the search items (the
    search's ranking, or when every arm was eliminated, the one whose worst bound is highest)."""
    out = Migration(deadline=Deadline(model=leaving.model, retires_on=leaving.retires_on,
                                      days_left=leaving.days_left(today), source=leaving.source),
                    excluded_models={m: r.retires_on for m, r in left_out.items()})
    passed = [c for c in certs if c.passed]
    best = passed[0] if passed else (certs[0] if certs else None)
    if best is not None:
        candidate = best.arm.candidate
        out.best = CertificationSummary(sha=candidate.sha, label=candidate.label, passed=best.passed,
                                        reason=best.reason, n=best.n_planned, wanted=best.n_wanted)
        out.best_model = candidate.version.model
        out.best_evidence = {k: Verdict.model_validate(_jsonable(e.to_dict())) for k, e in best.evidence.items()}
    elif any(a.evidence for a in arms):
        arm = max((a for a in arms if a.evidence), key=lambda a: a.worst_lower())
        out.best = CertificationSummary(sha=arm.candidate.sha, label=arm.candidate.label, passed=False,
                                        reason=f"not certified: {arm.reason or 'raced'} ({arm.n} search items)",
                                        n=arm.n)
        out.best_model = arm.candidate.version.model
        out.best_evidence = {k: Verdict.model_validate(_jsonable(e.to_dict())) for k, e in arm.evidence.items()}
    out.certified = bool(passed)
    if not passed:
        out.message = f"no certified replacement: needs a person before {leaving.retires_on.isoformat()}"
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
