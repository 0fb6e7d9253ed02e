"""Certification: the best few candidates of the search are tested on the holdout with the
non-inferiority gate, every evaluator. Only those that pass become Suggestions. The holdout
never influences which candidates are chosen: they arrive already ranked by the search.

A repair (`RunContext.repair`) is certified the same way, on the same code path, at margin
−min_effect per evaluator: the one-sided superiority test (better by at least min_effect).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from trimloop.core.errors import ProviderUnavailable, SpendCapReached
from trimloop.evals.control import Beside, rerun
from trimloop.evals.latency import LatencyTest, latency_test
from trimloop.evals.report import compare_results, paired
from trimloop.evals.runner import ItemResult, Trials, evaluate_items, samples_for
from trimloop.evals.stats import NonInferiority, items_needed, non_inferiority, paired_scores, predictive_power
from trimloop.optimizer.context import RunContext
from trimloop.optimizer.race import Arm


LOOKS = 8  # certification evaluates in chunks and may stop early, for futility only
def look_size(n: int) -> int:
    """Items between two looks of a certification planned for `n` items."""
    return max(50, -(-n // LOOKS))


HOPELESS = 0.02  # stop when the predictive power of finishing falls below this (bench.gate: costs ~1 point of power)


def _futile(cert: "Certification", baseline: dict[Any, ItemResult], keys: list[str], margin_of: dict[str, float],
            margin: float, *, alpha: float, n_final: int) -> str | None:
    """A reason to stop early, or None. Two rules, for each evaluator: (1) it is already clearly
    inferior (the upper bound at level α / LOOKS is below −margin); (2) it is hopeless: the
    predictive power of going on to `n_final` items is below HOPELESS. Stopping only to fail never
    raises the chance of a false pass; it leaves the calls to the next candidate."""
    tested_on = reference(cert, baseline)
    for key in keys:
        base, cand = paired(tested_on, cert.results.flat(), key)
        if len(base) < 20:
            return None
        m = margin_of.get(key, margin)
        e = non_inferiority(base, cand, margin=m, alpha=alpha / LOOKS)
        if e.upper < -m:
            return (f"{key}: stopped early for futility after {e.n} items: delta {e.delta:+.3f}, "
                    f"upper bound {e.upper:+.3f} < {-m:+g} at level {alpha / LOOKS:.4f}")
        b, c, _, _ = paired_scores(base, cand)
        if len(b) < n_final:
            chance = predictive_power(c - b, n_final, margin=m, alpha=alpha)
            if chance < HOPELESS:
                odds = "under 0.1%" if chance < 0.001 else f"{chance:.1%}"
                return (f"{key}: stopped early for futility after {e.n} of {n_final} items: delta {e.delta:+.3f}; "
                        f"its chance of passing on all {n_final} was {odds} (predictive power; the test stops "
                        f"below {HOPELESS:.0%} and leaves the calls to the next candidate)")
    return None


@dataclass
class Certification:
    """One arm tested on the holdout: its trials there, the test per evaluator at level `alpha`."""

    arm: Arm
    n_planned: int
    n_wanted: int
    alpha: float
    results: Trials = field(default_factory=Trials)
    evidence: dict[str, NonInferiority] = field(default_factory=dict)
    passed: bool = False
    reason: str = ""
    control: Trials | None = None  # the baseline re-run beside it (RunContext.control), else None
    latency: LatencyTest | None = None  # its latency against the control's (objectives that read latency)

    @property
    def control_calls(self) -> int:
        return self.control.calls if self.control is not None else 0

    def add(self, result: ItemResult) -> None:
        self.results.add(result)

    @property
    def calls(self) -> int:
        return self.results.calls


def reference(cert: Certification, baseline: dict[Any, ItemResult]) -> list[ItemResult]:
    """The baseline side of the comparison: the control arm's fresh results when it ran, else
    the baseline's (logged) results on the items the candidate was tested on."""
    if cert.control is not None:
        return [r for r in cert.control.flat() if r.item_id in cert.results]
    return [baseline[i] for i in cert.results if i in baseline]


async def evaluate_beside(run: RunContext, arm: Arm, items: Sequence[Any], *, on_result: Any,
                          on_control: Any) -> None:
    """The arm on `items`; with the run's control arm on, the baseline re-run on the same items,
    its calls interleaved with the arm's (evals.control.rerun)."""
    version = arm.candidate.version
    if not run.control:
        await evaluate_items(template=version.template, model=version.model, params=version.params, items=items,
                             evaluators=run.evaluators, gateway=run.gateway, concurrency=run.concurrency,
                             ledger=run.ledger, on_result=on_result, samples=run.samples,
                             propagate=(ProviderUnavailable,))
        return
    await rerun(template=run.baseline.template, model=run.baseline.model, params=run.baseline.params, items=items,
                evaluators=run.evaluators, gateway=run.gateway, samples=run.samples, concurrency=run.concurrency,
                ledger=run.ledger, scope=run.control_scope, on_result=on_control,
                beside=Beside(version.template, version.model, version.params, samples=run.samples,
                              on_result=on_result, scope=run.candidate_scope),
                propagate=(ProviderUnavailable,))


def calls_per_item(run: RunContext, arm: Arm) -> int:
    """Calls one holdout item costs this arm: its samples, plus the control's when it runs."""
    own = samples_for(arm.candidate.version.params, run.samples)
    return own + (samples_for(run.baseline.params, run.samples) if run.control else 0)


def judge_latency(cert: Certification, run: RunContext) -> str | None:
    """With an objective that reads latency: the latency test on the paired fresh calls (control vs
    candidate; the logged latencies are never used), and why it fails, or None."""
    objective = run.objective
    if objective is None or not objective.measures_latency:
        return None
    if cert.control is None:
        return "the objective reads latency, and latency is compared only against the control arm (control = never)"
    cert.latency = latency_test(cert.control.flat(), cert.results.flat(), quantile=objective.quantile,
                                min_effect=objective.min_effect if objective.kind == "latency" else 0.0,
                                alpha=cert.alpha, seed=run.seed, ttft=objective.ttft)
    test = cert.latency
    if test is None:
        return ("too few streamed calls to compare time to first token (the versions' params need stream = true)"
                if objective.ttft else "too few answered calls to compare latency")
    if objective.kind == "latency" and not test.passed:
        return (f"latency: {test.stat} ratio {test.ratio:.2f}, upper bound {test.ratio_upper:.2f} ≥ "
                f"{1 - objective.min_effect:.2f} (not faster by {objective.min_effect:.0%}, n={test.n})")
    if objective.max_latency_s is not None and test.after_s > objective.max_latency_s:
        return f"latency: {test.stat} {test.after_s:.3g} s > the cap of {objective.max_latency_s:g} s"
    return None


def anticipated_delta(observed: float, margin: float) -> float:
    """The difference to plan certification for: what the search saw, if it was a loss, but never
    planned below half the margin (a candidate the search saw doing better is planned at parity).
    On a superiority test (margin < 0) the gain the search saw, as it is."""
    if margin < 0:
        return observed
    return max(min(observed, 0.0), -margin / 2)


def arm_level(alpha: float, arms: int) -> float:
    """The level each arm is tested at when `arms` are tested on the holdout: α / arms
    (Bonferroni, see `certify`). The preflight plans the holdout at `arm_level(α, certify_top)`."""
    return alpha / max(1, arms)


ALL_ITEMS = 10**6  # "as many as there are": a superiority test whose search gain gives no plan


def planned_items(arm: Arm, baseline: dict[Any, ItemResult], keys: list[str], *, margin: float,
                  alpha: float, power: float) -> int:
    """The power helper on what the search saw: items needed on the holdout for this arm.

    Planned for the loss the search measured (see `anticipated_delta`), not for parity: a
    candidate 1.5 points behind on the search needs several times the items of an equal one to
    be shown within a 3-point margin, and planning for parity would test it on too few to pass.
    The number depends on the search split only, so the holdout test keeps its level."""
    needed = 2
    for key in keys:
        pairs = [(baseline[i].scores.get(key, 0.0), statistics.fmean(r.scores.get(key, 0.0) for r in rs))
                 for i, rs in arm.results.items() if i in baseline and rs]
        if len(pairs) < 2:
            continue
        b, c = np.array(pairs).T
        expect = anticipated_delta(float(np.mean(c - b)), margin)
        if expect + margin <= 0.01:  # a repair the search saw gain little: no plan has power, use every item
            needed = ALL_ITEMS
            continue
        binary = set(np.unique(np.concatenate([b, c]))) <= {0.0, 1.0}
        if binary:
            # Laplace's estimate: zero disagreements on a small slice is not zero discordance.
            discordance = min(1.0, max((float(np.sum(b != c)) + 1) / (len(b) + 2), 0.02, abs(expect) + 0.01))
            try:
                needed = max(needed, items_needed(margin=margin, discordance=discordance, alpha=alpha, power=power,
                                                  true_delta=expect))
            except ValueError:  # a gain as large as the discordance (all wins on the search): no formula
                needed = ALL_ITEMS
        else:
            sd = max(float(np.std(c - b, ddof=1)), 0.05)
            needed = max(needed, items_needed(margin=margin, sd=sd, alpha=alpha, power=power, true_delta=expect))
    return needed


def power_at(n: int, wanted: int, *, alpha: float, power: float) -> float:
    """The chance of passing on `n` items when `wanted` items give `power` (the normal
    approximation: the items needed grow with (z_α + z_power)²)."""
    if n >= wanted:
        return power
    za, zb = float(norm.ppf(1 - alpha)), float(norm.ppf(power))
    return float(norm.cdf((za + zb) * (n / wanted) ** 0.5 - za))


def certification_order(arms: Sequence[Arm], plans: dict[str, int], *, available: int | dict[str, int],
                        baseline_cost: float, alpha: float, power: float) -> list[Arm]:
    """The arms by expected saving at certification: the share of cost saved × the chance of passing
    on the items there are (holdout size, calls left). A −54 % candidate the search saw 1.5 points
    behind needs more holdout than exists and passes about half the time; a −45 % one at parity
    passes four times in five on fewer items, so it goes first. Search data only (the plans come
    from the search split): the holdout never picks the order. Ties keep the search's order.
    `available` is one number for all arms or, by candidate sha, each arm's own (an arm that samples
    three times per item gets a third of the items for the same calls)."""
    def value(arm: Arm) -> float:
        sha = arm.candidate.sha
        wanted, there = plans[sha], available[sha] if isinstance(available, dict) else available
        return arm.saving(baseline_cost) * power_at(min(wanted, there), wanted, alpha=alpha, power=power)

    return sorted(arms, key=lambda a: -round(value(a), 9))


async def certify(*, ranked: Sequence[Arm], run: RunContext, top: int = 2,
                  baseline_cost: float | None = None) -> list[Certification]:
    """Test the first `top` ranked arms on the run's holdout; return one Certification each.

    The first that passes becomes the suggestion, so each is tested at α / (arms tested):
    the chance that an inferior candidate gets through stays ≤ α for the run (Bonferroni).
    `run.margins` overrides `run.margin` per evaluator key. With `baseline_cost`, the arms are
    tested in `certification_order` (expected saving given the items available), not the search's
    order. The plans read the baseline on the search items, the tests on the holdout items."""
    say, items, ledger, samples, margin = run.say, run.holdout_items, run.ledger, run.samples, run.margin
    evaluators, power = run.evaluators, run.power
    baseline_results = search_baseline = dict(run.baseline_results)  # looked up by the items each arm has
    if run.control:  # the search raced against the control: the power helper plans on that
        search_baseline = search_baseline | run.control_on(run.search_items)
    margin_of = dict(run.margins)
    tested = list(ranked)[:top]
    alpha = arm_level(run.alpha, len(tested))
    keys = run.keys
    order = [items[i] for i in np.random.default_rng(run.seed + 1).permutation(len(items))]
    plans = {arm.candidate.sha: max(planned_items(arm, search_baseline, [k], margin=margin_of.get(k, margin),
                                                  alpha=alpha, power=power) for k in keys) for arm in tested}
    if baseline_cost is not None:
        left = ledger.remaining_calls if ledger is not None else None
        available = {a.candidate.sha: min(len(order), len(order) if left is None
                                          else left // calls_per_item(run, a))
                     for a in tested}
        tested = certification_order(tested, plans, available=available, baseline_cost=baseline_cost,
                                     alpha=alpha, power=power)
    say("certify.order", {"order": [{"sha": a.candidate.sha, "label": a.candidate.label,
                                     "wanted": plans[a.candidate.sha]} for a in tested]})
    out: list[Certification] = []
    for arm in tested:
        if arm.candidate.same_text:  # only cache breakpoints added: the model gets the very same text
            same = await unchanged_check(arm, run, order, baseline_results, alpha)
            if same is not None:
                say("certify.finished", {"sha": arm.candidate.sha, "passed": same.passed, "reason": same.reason,
                                         "evidence": {k: e.to_dict() for k, e in same.evidence.items()}})
                out.append(same)
                if same.passed:
                    break
                continue
        wanted = plans[arm.candidate.sha]
        if wanted >= ALL_ITEMS:
            wanted = len(order)  # a repair with no plan: tested on the whole holdout
        # A repair is tested on the whole holdout: the plan says it can pass on fewer, but its gain
        # is a number the reviewer reads (the interval narrows with every item), and repairs are rare.
        n = len(order) if run.repair else min(wanted, len(order))
        cert = Certification(arm=arm, n_planned=n, n_wanted=wanted, alpha=alpha,
                             control=Trials() if run.control else None)
        say("certify.started", {"sha": arm.candidate.sha, "label": arm.candidate.label, "items": n,
                                "wanted": wanted})
        chunk = look_size(n)
        try:
            for start in range(0, n, chunk):
                await evaluate_beside(run, arm, order[start:min(n, start + chunk)], on_result=cert.add,
                                      on_control=cert.control.add if cert.control is not None else None)
                futile = _futile(cert, baseline_results, keys, margin_of, margin, alpha=alpha, n_final=n)
                if futile and start + chunk < n:
                    cert.reason = futile
                    break
        except SpendCapReached as exc:
            cert.reason = f"budget ran out during certification: {exc.message}"
        tested_on = reference(cert, baseline_results)
        cert.evidence = dict(compare_results(tested_on, cert.results.flat(), evaluators=keys, margin=margin,
                                             margins=margin_of, alpha=alpha).verdicts)
        failing = [k for k in keys if k not in cert.evidence or not cert.evidence[k].passed]
        cert.passed = not failing and not cert.reason and cert.calls >= n
        slow = judge_latency(cert, run)
        if slow and cert.passed:
            cert.passed, cert.reason = False, slow
        if not cert.reason:
            if cert.passed:
                cert.reason = (f"better by at least {-margin:g} on every evaluator (superiority, n={n})" if run.repair
                               else f"non-inferior on every evaluator at margin {margin} (n={n})")
                if cert.latency is not None:
                    cert.reason += f"; latency {cert.latency.stat} ×{cert.latency.ratio:.2f} " \
                        f"(upper bound ×{cert.latency.ratio_upper:.2f}, fresh paired calls)"
            else:
                parts = []
                for k in failing:
                    e = cert.evidence.get(k)
                    parts.append(f"{k}: lower bound {e.lower:+.3f} ≤ {-e.margin:+g} (n={e.n})" if e else f"{k}: too few items")
                cert.reason = "; ".join(parts)
                if wanted > len(order):
                    cert.reason += f"; the holdout has {len(order)} items, the power helper wanted {wanted}"
        say("certify.finished", {"sha": arm.candidate.sha, "passed": cert.passed, "reason": cert.reason,
                                 "latency": cert.latency.to_dict() if cert.latency is not None else None,
                                 "evidence": {k: e.to_dict() for k, e in cert.evidence.items()}})
        out.append(cert)
        if cert.passed:
            break  # the first that passes is the suggestion; testing more would only spend
    return out


SAME_TEXT_SAMPLE = 10  # holdout items a breakpoint-only candidate is checked on


async def unchanged_check(arm: Arm, run: RunContext, order: Sequence[Any], baseline: dict[Any, ItemResult],
                          alpha: float) -> Certification | None:
    """A candidate that sends the baseline's very text (it only adds cache breakpoints) needs no
    quality test, only a check that its outputs are unchanged: it passes when its outputs equal the
    baseline's on SAME_TEXT_SAMPLE holdout items. None (test it like any other) when they differ or
    the baseline samples at temperature > 0, where outputs vary anyway."""
    if float(run.baseline.params.get("temperature") or 0) > 0:
        return None
    sample = [i for i in order if i.id in baseline][:SAME_TEXT_SAMPLE]
    cert = Certification(arm=arm, n_planned=len(sample), n_wanted=len(sample), alpha=alpha)
    try:
        await evaluate_items(template=arm.candidate.version.template, model=arm.candidate.version.model,
                             params=arm.candidate.version.params, items=sample, evaluators=run.evaluators,
                             gateway=run.gateway, concurrency=run.concurrency, ledger=run.ledger,
                             on_result=cert.add, samples=1, propagate=(ProviderUnavailable,))
    except SpendCapReached as exc:
        cert.reason = f"budget ran out during the unchanged-output check: {exc.message}"
        return cert
    same = sum(1 for i in sample if i.id in cert.results
               and " ".join((cert.results[i.id][0].output or "").split()) == " ".join((baseline[i.id].output or "").split()))
    if same < len(sample) or not sample:
        return None
    tested_on = [baseline[i] for i in cert.results if i in baseline]
    cert.evidence = dict(compare_results(tested_on, cert.results.flat(), evaluators=run.keys, margin=run.margin,
                                         margins=dict(run.margins), alpha=alpha).verdicts)
    cert.passed = True
    cert.reason = (f"the text sent is unchanged (only cache breakpoints added): outputs identical to the "
                   f"baseline's on {same} of {len(sample)} holdout items")
    return cert
