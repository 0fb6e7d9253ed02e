"""Budgeted racing search: propose candidates with moves, race them on growing slices of the
search split (successive halving; the sequential test's futility side stops losers early), and
keep the score–cost–latency Pareto front. Deterministic for a seed; never sees the holdout.

Objectives, in order: non-inferior on every evaluator, then cost per call, then latency p50. With
a latency objective (and its control arm) the race orders by speed instead: candidates are picked
by estimated latency (prompt tokens + 20 × output tokens) and ranked by their latency measured
against the control's on the same items × their chance of holding quality.
A migration (`SearchConfig.migrate`: the baseline's model retires) races candidates on other
models whatever they cost, ranked by their chance of holding quality, then by cost. A repair
(`SearchConfig.repair`) proposes with the repair moves (moves.REPAIR_MOVES) and races candidates
whatever they cost, ranked by their chance of being better by the min effect (the run's margins
are then −min_effect: the superiority test), then by cost.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.stats import norm

from trimloop.core.catalog import count_message_tokens, count_tokens
from trimloop.core.errors import SpendCapReached, TemplateError
from trimloop.core.status import CandidateStatus
from trimloop.core.templates import render
from trimloop.core.usage import TokenUsage
from trimloop.evals.latency import latency_test
from trimloop.evals.runner import samples_for
from trimloop.evals.sequential import sequential_design
from trimloop.optimizer.certify import evaluate_beside
from trimloop.optimizer.context import Emit, RunContext
from trimloop.optimizer.moves import MOVES, REPAIR_MOVES, Move
from trimloop.optimizer.race import Arm, compare, pareto_front
from trimloop.optimizer.spec import CandidateSpec, MoveContext, VersionSpec, start


@dataclass(frozen=True)
class SearchConfig:
    """The race's own settings; margin, α, samples and the rest come with the RunContext."""

    rungs: tuple[int, ...] = (16, 48, 144)  # cumulative items per look
    eta: int = 3  # keep 1/eta of the racing arms after each look
    max_candidates: int = 12
    compose: bool = True  # also shorten / prune the retargeted versions
    max_calls: int | None = None  # the search's own share of the run's budget
    migrate: bool = False  # the baseline's model retires: any cost, quality first
    repair: bool = False  # a repair: the repair moves, any cost, chance of superiority first
    exclude_models: frozenset[str] = frozenset()  # never candidates (retiring models)
    rewrite_share: float = 0.25  # of the search's calls, the most the rewrite move's GEPA may spend
    objective: Any = None  # optimizer.objective.Objective: which candidates may race (None: cheaper ones)

    def __post_init__(self) -> None:
        if not self.rungs or list(self.rungs) != sorted(set(self.rungs)) or self.rungs[0] < 2:
            raise ValueError(f"rungs must be increasing item counts ≥ 2, got {self.rungs}")
        if self.eta < 2:
            raise ValueError("eta must be ≥ 2")
        if not 0 <= self.rewrite_share < 1:
            raise ValueError(f"rewrite_share must be in [0, 1), got {self.rewrite_share}")


@dataclass
class SearchResult:
    arms: list[Arm]
    front: list[Arm]
    ranked: list[Arm]  # best first, for certification
    baseline_cost: float
    calls: int = 0
    budget_exhausted: bool = False
    notes: list[str] = field(default_factory=list)
    control_calls: int = 0  # the baseline control arm's results on the search items (RunContext.control)


async def propose_candidates(baseline: VersionSpec, context: MoveContext, *, compose: bool,
                             emit: Emit | None = None, repair: bool = False) -> list[CandidateSpec]:
    """Every free move on the baseline, then the composing ones on top of those proposals (every
    order-free combination), then the moves that call a model, on the baseline only. `repair`:
    the moves that can raise quality (REPAIR_MOVES) instead of the ones that cut cost."""
    say = emit or (lambda kind, data: None)
    root = start(baseline)
    moves: list[Move] = [cls() for cls in (REPAIR_MOVES if repair else MOVES)]
    free = [m for m in moves if not m.calls_model]
    first: list[CandidateSpec] = []
    for move in free:
        first += await move.propose(root, context=context)
    found = {c.sha: c for c in first}
    if compose:
        # A repair also moves the reformatted prompts to the other models (a base model may follow
        # a shown format that the baseline's model ignores).
        composing = [m for m in free if m.composes or (repair and m.name == "retarget")]
        level = first
        for _ in range(len(composing)):
            children = []
            for parent in level:
                used = {s["move"] for s in parent.lineage}
                for move in composing:
                    if move.name in used:
                        continue
                    for child in await move.propose(parent, context=context):
                        if child.sha not in found:
                            found[child.sha] = child
                            children.append(child)
            level = children
    found.pop(baseline.sha, None)
    proposed = list(found.values())
    for move in (m for m in moves if m.calls_model):
        if context.proposer_model:
            paid = await move.propose(root, context=context)
            say(f"{move.name}.proposed", {"proposer": context.proposer_model, "proposals": len(paid)})
            proposed += paid
    return proposed


def prompt_tokens(version: VersionSpec, inputs: Sequence[dict[str, Any]]) -> float:
    """The mean tokens of the version's rendered prompt on these inputs."""
    tokens = []
    for values in inputs:
        try:
            prompt = render(version.template, values)
        except TemplateError:
            continue
        tokens.append(count_message_tokens(prompt) if isinstance(prompt, list) else count_tokens(prompt))
    return statistics.fmean(tokens) if tokens else 0.0


DECODE_WEIGHT = 20  # an output token takes about as long as this many prompt tokens (decoding vs prefill)


def estimate_latency(version: VersionSpec, inputs: Sequence[dict[str, Any]], output_tokens: float) -> float:
    """A call's latency before any is measured, in prompt-token units: prompt tokens + 20 × output
    tokens (each output token is one decoding step; the prompt is read in parallel). For ordering
    the candidates of a latency objective only; the race then measures them against the control."""
    return prompt_tokens(version, inputs) + DECODE_WEIGHT * output_tokens


def estimate_cost(version: VersionSpec, context: MoveContext, inputs: Sequence[dict[str, Any]],
                  output_tokens: float, reasoning_tokens: float = 0.0) -> float:
    """Cost per call from the rendered prompt's tokens and the expected output (the baseline's
    typical length, or what the candidate's move expects), priced by token class with the
    baseline's prompt-cache behaviour when the context has it (optimizer.caching)."""
    model = context.resolve(version.model)
    mean_in = prompt_tokens(version, inputs)
    if context.cache is not None or reasoning_tokens:
        usage = (context.cache.usage(version.model, version.template, input_tokens=mean_in, output_tokens=output_tokens,
                                     reasoning_tokens=reasoning_tokens, params=version.params)
                 if context.cache is not None else
                 TokenUsage(round(mean_in), round(output_tokens), reasoning=round(min(reasoning_tokens, output_tokens))))
        cost = model.cost(usage)
        if cost is not None:
            return cost
    return model.price(round(mean_in), round(output_tokens))


def expected_output(candidate: CandidateSpec, output_tokens: float, reasoning_tokens: float) -> tuple[float, float]:
    """(output, reasoning) tokens a call of the candidate is expected to bill: its move's outlook
    where it has one, else the baseline's."""
    outlook = candidate.outlook
    if outlook is None:
        return output_tokens, reasoning_tokens
    reasoning = outlook.reasoning_tokens if outlook.reasoning_tokens is not None else reasoning_tokens
    visible = output_tokens - reasoning_tokens
    output = outlook.output_tokens if outlook.output_tokens is not None else visible + reasoning
    return output, min(reasoning, output)


def family(candidate: CandidateSpec) -> tuple[Any, ...]:
    """A candidate's structural choices: its model and every change but instruction shortening.
    Shortening levels within a family differ least; models and example sets differ most."""
    return (candidate.version.model,) + tuple(
        step["detail"] for step in candidate.lineage if step["move"] not in ("shorten", "retarget"))


def select_arms(candidates: list[CandidateSpec], estimates: dict[str, float], baseline_cost: float,
                limit: int, *, migrate: bool = False, objective: Any = None,
                speed: dict[str, float] | None = None) -> list[Arm]:
    """At most `limit` cheaper-than-baseline candidates (any cost, when migrating off a retiring
    model; for a latency objective, within its cost limit), covering the families first.

    Round one takes the cheapest candidate of every family (same model and examples, any
    instruction length), round two the next cheapest of each, and so on: the race tries every
    model × example set before it spends arms on a second instruction length of one. A round with
    more families than room left is spread evenly over its cost ranking. With `speed` (estimated
    latencies, for a latency objective) "cheapest" reads "fastest" throughout."""
    admits = (lambda c: estimates[c.sha] < baseline_cost) if objective is None else (  # noqa: E731
        lambda c: objective.admits(estimates[c.sha], baseline_cost))
    order = speed if speed is not None else estimates
    cheaper = sorted((c for c in candidates if migrate or admits(c)),
                     key=lambda c: (order[c.sha], c.sha))
    families: dict[tuple[Any, ...], list[CandidateSpec]] = {}
    for c in cheaper:
        families.setdefault(family(c), []).append(c)
    picked: list[CandidateSpec] = []
    depth = 0
    while len(picked) < limit:
        layer = [members[depth] for members in families.values() if len(members) > depth]
        if not layer:
            break
        layer.sort(key=lambda c: (order[c.sha], c.sha))
        room = limit - len(picked)
        if len(layer) > room:
            layer = [layer[i] for i in np.unique(np.linspace(0, len(layer) - 1, room).round().astype(int))]
        picked += layer
        depth += 1
    picked.sort(key=lambda c: (order[c.sha], c.sha))
    return [Arm(c, estimates[c.sha]) for c in picked]


def chance(arm: Arm) -> float:
    """The chance, from the evidence so far, that the arm is non-inferior on every evaluator
    (Φ((δ̂ + margin) / se) each; on a repair, margin −min_effect: superior); 0 without evidence."""
    if not arm.evidence:
        return 0.0
    p = 1.0
    for e in arm.evidence.values():
        se = (e.upper - e.lower) / (2 * float(norm.ppf(1 - e.alpha)))
        gap = e.delta + e.margin
        p *= float(norm.cdf(gap / se)) if se > 1e-12 else float(gap > 0)
    return p


def prospect(arm: Arm, baseline_cost: float, *, migrate: bool = False, latency: bool = False) -> float:
    """Expected saving: the share of the baseline's cost the arm saves, times its `chance`.
    A cheap arm with a doubtful record ranks below a dearer one that looks like parity. When
    migrating off a retiring model the baseline cannot stay, so only the chance counts. For a
    latency objective (`latency`): the share of the control's latency it was measured to save on
    the same items (`Arm.speed_ratio`), times its chance."""
    if migrate:
        return chance(arm)
    if latency:
        return max(0.0, 1 - arm.speed_ratio) * chance(arm) if arm.speed_ratio is not None else 0.0
    if not arm.evidence or baseline_cost <= 0:
        return 0.0
    return arm.saving(baseline_cost) * chance(arm)


def rank(arms: list[Arm], baseline_cost: float, *, migrate: bool = False, latency: bool = False) -> list[Arm]:
    """Best first: by expected saving (see `prospect`; for a latency objective, of latency), then
    cheaper (a migration's ties), then faster; arms that halving dropped after those still racing.
    Small slices give wide intervals, so a cheap arm is not written off on a few unlucky items;
    later looks and certification do the proving."""
    def key(arm: Arm) -> tuple[Any, ...]:
        return (arm.status == CandidateStatus.dropped,
                -round(prospect(arm, baseline_cost, migrate=migrate, latency=latency), 9),
                arm.est_cost if migrate else 0.0, arm.latency_p50 or math.inf, arm.candidate.sha)

    return sorted((a for a in arms if a.status != CandidateStatus.eliminated and a.n), key=key)


def final_ranking(arms: list[Arm], baseline_cost: float, *, migrate: bool = False,
                  latency: bool = False) -> list[Arm]:
    """For certification: the arms still in the race, then those halving dropped for budget (not
    shown inferior) that may still be non-inferior, so a futile first pick is not the end."""
    ranked = rank(arms, baseline_cost, migrate=migrate, latency=latency)
    return [a for a in ranked if a.status != CandidateStatus.dropped or all(e.upper > -e.margin for e in a.evidence.values())]


async def search(
    *,
    run: RunContext,
    context: MoveContext,
    config: SearchConfig = SearchConfig(),
    candidates: list[CandidateSpec] | None = None,
    exclude: frozenset[str] = frozenset(),
) -> SearchResult:
    """Race candidates against the baseline's logged results on the run's search items."""
    say, baseline, items, ledger = run.say, run.baseline, run.search_items, run.ledger
    baseline_results = run.baseline_on(items)
    rng = np.random.default_rng(run.seed)
    order = [items[i] for i in rng.permutation(len(items))]
    keys = run.keys
    base_scores = {k: {i: [r.scores.get(k, 0.0)] for i, r in baseline_results.items()} for k in keys}
    out_tokens = statistics.fmean([r.output_tokens for r in baseline_results.values()] or [0])
    reasoning = statistics.fmean([r.reasoning_tokens for r in baseline_results.values()] or [0])
    sample_inputs = [it.inputs for it in order[:20]]
    baseline_cost = estimate_cost(baseline, context, sample_inputs, out_tokens, reasoning)

    quality_first = config.migrate or config.repair  # any cost; ranked by the chance of passing
    before = (ledger.calls + ledger.cache_hits) if ledger is not None else 0
    if candidates is None:
        # The moves that call a model (rewrite: GEPA) get a share of the search's calls and run
        # on the search items the race looks at last; what they spend is taken off the race's.
        budget = config.max_calls if config.max_calls is not None else (
            ledger.remaining_calls if ledger is not None else None)
        context = replace(context, items=order[::-1], evaluators=list(run.evaluators), concurrency=run.concurrency, emit=say,
                          budget_calls=int(budget * config.rewrite_share) if budget is not None else None)
    proposed = (list(candidates) if candidates is not None
                else await propose_candidates(baseline, context, compose=config.compose, emit=say, repair=config.repair))
    proposal_calls = (ledger.calls + ledger.cache_hits - before) if ledger is not None else 0
    proposed = [c for c in proposed if c.sha not in exclude and c.version.model not in config.exclude_models]
    estimates = {c.sha: estimate_cost(c.version, context, sample_inputs, *expected_output(c, out_tokens, reasoning))
                 for c in proposed}
    # A latency objective ranks by speed: estimated first, then measured against the control arm.
    by_speed = (not quality_first and config.objective is not None and config.objective.kind == "latency"
                and run.control)
    speed = ({c.sha: estimate_latency(c.version, sample_inputs, expected_output(c, out_tokens, reasoning)[0])
              for c in proposed} if by_speed else None)
    arms = select_arms(proposed, estimates, baseline_cost, config.max_candidates, migrate=quality_first,
                       objective=config.objective, speed=speed)
    result = SearchResult(arms=arms, front=[], ranked=[], baseline_cost=baseline_cost, calls=proposal_calls)
    say("search.started", {"proposed": len(proposed), "racing": len(arms), "baseline_est_cost": baseline_cost,
                           "excluded": len(exclude)})
    for arm in arms:
        say("candidate.proposed", {"sha": arm.candidate.sha, "label": arm.candidate.label,
                                   "lineage": list(arm.candidate.lineage), "est_cost": arm.est_cost})
    if not arms:
        result.notes.append("no repair move produced a candidate (no allowed answers known, no other candidate "
                            "model, no proposer_model)" if config.repair
                            else "no move produced a candidate on a model that is not retiring" if config.migrate
                            else "no move produced a candidate cheaper than the baseline")
        return result

    rungs = [min(r, len(order)) for r in config.rungs]
    rungs = sorted(set(r for r in rungs if r >= 2))
    design = _design(run, base_scores, keys, looks=len(config.rungs))
    done = 0
    for look, size in enumerate(rungs, 1):
        racing = [a for a in arms if a.status == CandidateStatus.racing]
        if not racing:
            break
        new_items = order[done:size]
        limits = [ledger.remaining_calls if ledger is not None else None,
                  config.max_calls - proposal_calls - sum(a.calls for a in arms) if config.max_calls is not None else None]
        remaining = min((x for x in limits if x is not None), default=None)
        if remaining is not None and run.control:  # the control's calls on the new items come first
            remaining -= len(new_items) * samples_for(baseline.params, run.samples)
        if remaining is not None and remaining < len(racing) * len(new_items):
            # Not enough budget for the whole slice: a shorter slice for every racing arm.
            per_arm = remaining // max(1, len(racing))
            result.budget_exhausted = True
            if per_arm < 2:
                for arm in racing:
                    arm.status, arm.reason = CandidateStatus.stopped, f"budget: stopped after {arm.n} items"
                break
            new_items = new_items[:per_arm]
            size = done + per_arm
        for arm in racing:
            try:
                await evaluate_beside(run, arm, new_items, on_result=arm.add, on_control=run.keep_control)
            except SpendCapReached as exc:
                arm.status, arm.reason = CandidateStatus.stopped, f"budget: {exc.message}"
                result.budget_exhausted = True
            arm.rung = look
            if run.control:  # judged against the control's fresh results, not the logged ones
                base_scores = control_scores(run, order[:size], keys)
            if by_speed:
                arm.speed_ratio = measured_ratio(run, arm, config.objective)
            _judge(arm, base_scores, keys, run, design, look, len(rungs))
            say("candidate.scored", arm.summary() | {"look": look})
        done = size
        if result.budget_exhausted or look == len(rungs):
            break  # no halving after the last look: certification takes the best few from here
        _halve(arms, config.eta, say, baseline_cost, migrate=quality_first, latency=by_speed)
    result.calls = sum(a.calls for a in arms) + proposal_calls
    result.control_calls = sum(len(run.controls.get(i.id, [])) for i in order)
    result.front = pareto_front([a for a in arms if a.status not in (CandidateStatus.eliminated, CandidateStatus.dropped)], keys)
    result.ranked = final_ranking(arms, baseline_cost, migrate=quality_first, latency=by_speed)
    say("search.finished", {"calls": result.calls, "front": [a.candidate.sha for a in result.front],
                            "ranked": [a.candidate.sha for a in result.ranked]})
    return result


def measured_ratio(run: RunContext, arm: Arm, objective: Any) -> float | None:
    """The arm's latency / the control's on the items both answered (the paired geometric mean,
    time to first token when the objective reads it); None below 2 such items."""
    control = [r for rs in run.controls.values() for r in rs if r.item_id in arm.results]
    test = latency_test(control, arm.results.flat(), min_effect=0.0, alpha=run.alpha, ttft=objective.ttft)
    return test.ratio if test is not None else None


def control_scores(run: RunContext, items: Sequence[Any], keys: list[str]) -> dict[str, dict[Any, list[float]]]:
    """The control arm's scores on the items it has run on, shaped as the race's baseline scores."""
    ran = run.control_on(items)
    return {k: {i: [r.scores.get(k, 0.0)] for i, r in ran.items()} for k in keys}


def _design(run: RunContext, base_scores: dict[str, dict[Any, list[float]]], keys: list[str], *, looks: int) -> Any:
    """The sequential design for racing; discordance guessed from the baseline's error rate."""
    values = [v[0] for k in keys for v in base_scores[k].values()]
    binary = values and all(v in (0.0, 1.0) for v in values)
    if not binary or run.repair:  # the group-sequential design is the non-inferiority one
        return None
    error = 1 - statistics.fmean(values)
    discordance = min(0.9, max(0.05, 2 * error, run.margin * 2))
    return sequential_design(margin=max(run.margin, 1e-3), discordance=discordance,
                             alpha=run.alpha, looks=looks)


def _judge(arm: Arm, base: dict[str, dict[Any, list[float]]], keys: list[str], run: RunContext,
           design: Any, look: int, looks: int) -> None:
    """Update the arm's evidence; eliminate it when an evaluator is clearly inferior."""
    race_alpha = run.alpha / looks  # several looks at the same data: Bonferroni for eliminations
    verdicts = []
    for key in keys:
        margin = run.margin_of(key)
        evidence = compare(base[key], arm.scores(key), margin=margin, alpha=run.alpha)
        if evidence is None:
            continue
        arm.evidence[key] = evidence
        strict = compare(base[key], arm.scores(key), margin=margin, alpha=race_alpha)
        if strict is not None and strict.upper < -margin:
            arm.status = CandidateStatus.eliminated
            arm.reason = (f"{key}: {'not better by the min effect' if margin < 0 else 'inferior'} after "
                          f"{evidence.n} items (delta {evidence.delta:+.3f}, upper bound {strict.upper:+.3f} < "
                          f"{-margin:+g})")
            return
        if design is not None and margin == run.margin:
            decision = design.test({i: v[0] for i, v in base[key].items() if i in arm.results},
                                   {i: statistics.fmean(v) for i, v in arm.scores(key).items()})
            verdicts.append(decision.decision)
            if decision.decision == "inferior" and decision.look and decision.look < len(design.looks):
                arm.status = CandidateStatus.eliminated
                arm.reason = f"{key}: crossed the sequential futility bound at {decision.n} items"
                return
    if verdicts and all(v == "non-inferior" for v in verdicts):
        arm.status, arm.reason = CandidateStatus.qualified, f"non-inferior on every evaluator after {arm.n} items"


def _halve(arms: list[Arm], eta: int, say: Emit, baseline_cost: float, *, migrate: bool = False,
           latency: bool = False) -> None:
    racing = [a for a in arms if a.status == CandidateStatus.racing]
    keep = max(1, math.ceil(len(racing) / eta))
    for arm in rank(racing, baseline_cost, migrate=migrate, latency=latency)[keep:]:
        arm.status = CandidateStatus.dropped  # out of the race for budget, not shown inferior
        arm.reason = arm.reason or f"successive halving: not in the best {keep} after {arm.n} items"
        say("candidate.eliminated", {"sha": arm.candidate.sha, "reason": arm.reason, "n": arm.n})
