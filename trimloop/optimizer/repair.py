"""Repair runs: for a prompt that fails its own signals (evals.health `broken` or `degraded`),
search for a version that does better — at any cost — instead of a cheaper one that holds.

A repair run (`repair = true` in the run's options, `trimloop optimize NAME --repair`) proposes
with the moves that can raise quality (moves.REPAIR_MOVES: `answer_format`, `retarget` to every
candidate model, stronger ones too, and `rewrite` with a configured proposer), races them, and
certifies on the holdout with the one-sided superiority test: every evaluator must be better than
the baseline by at least `min_effect` (default 0.05; `min_effects` per evaluator), at the run's α,
on the same paired comparison as non-inferiority (evals.report.compare_results at margin
−min_effect). A certified repair becomes a suggestion of kind `repair` (its evidence carries the
gain with its interval and the cost change, which may be a rise); otherwise the run says "no
repair found" with the best candidate's evidence. Gold answers (or reviewers' labels through
`expected_from`) are needed: agreement with the baseline's own answers cannot show it is better.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from trimloop.core.errors import UserError
from trimloop.core.evidence import (
    CertificationSummary,
    HealthReport,
    QualityGain,
    RepairOutcome,
    RepairSummary,
    SavingsProjection,
    Verdict,
)
from trimloop.evals.datasets import looks_like_labels
from trimloop.evals.evaluators import NamedEvaluator
from trimloop.evals.evaluators.text import Label, MatchesBaseline, find_labels

MAX_ANSWERS = 30  # more distinct gold answers than this are free text, not labels


def check_signal(evaluators: Sequence[NamedEvaluator], *, prompt_name: str) -> None:
    """A repair must be judged against gold answers: refuse evaluators that compare the candidate
    with the baseline's own outputs, which no better version can beat."""
    own = [n.key for n in evaluators if isinstance(n.evaluator, MatchesBaseline)]
    if own:
        raise UserError(
            f"a repair of {prompt_name!r} needs gold answers, but evaluator {own[0]!r} scores agreement with the "
            "baseline's own answers, which no better version can beat",
            where=f"[prompts.{prompt_name}].evaluators",
            hint="set expected_from (the feedback that holds reviewers' answers) or import a gold set "
                 "(POST /datasets/import, then run with dataset = ID), with an evaluator such as label")


def allowed_answers(evaluators: Sequence[NamedEvaluator], expected: Sequence[str | None]) -> list[str]:
    """The answers the prompt may give: the first label evaluator's labels, else the gold answers
    when they are a few short labels; [] when neither."""
    for named in evaluators:
        if isinstance(named.evaluator, Label):
            return list(named.evaluator.labels)
    gold = [e for e in expected if e is not None]
    if gold and looks_like_labels(gold):
        distinct = sorted({" ".join(g.split()).casefold() for g in gold if g.strip()})
        if 2 <= len(distinct) <= MAX_ANSWERS:
            return distinct
    return []


def examples(items: Sequence[Any], answers: Sequence[str], *, seed: int,
             per_answer: int = 1) -> list[tuple[dict[str, Any], str]]:
    """Search-split items to show the answer's shape with: `per_answer` per allowed answer (the
    gold answer naming it), in a seeded order, at most 4 answers' worth. Never holdout items."""
    order = list(items)
    random.Random(seed).shuffle(order)
    out: list[tuple[dict[str, Any], str]] = []
    for answer in list(answers)[:4]:
        found = [i for i in order if i.expected is not None
                 and find_labels(i.expected, list(answers), mode="first")[0] == answer][:per_answer]
        out += [(dict(i.inputs), answer) for i in found]
    return out


def summary(*, cert: Any, min_effect: float, alpha: float, savings: SavingsProjection,
            health: HealthReport | None) -> RepairSummary:
    """The repair's gain per evaluator (its superiority test's numbers) and its cost change."""
    gains = {k: QualityGain(before=e.baseline_mean, after=e.candidate_mean, delta=e.delta, lower=e.lower,
                            upper=e.upper, min_effect=-e.margin, n=e.n, passed=e.passed)
             for k, e in cert.evidence.items()}
    before, after = savings.baseline_cost_per_call, savings.candidate_cost_per_call
    return RepairSummary(
        min_effect=min_effect, alpha=alpha, gains=gains, cost_per_call=[before, after],
        cost_change=(after / before - 1) if before else None, monthly_cost_change=-savings.monthly,
        baseline_health=health.verdict if health is not None else None,
        health_reasons=list(health.reasons) if health is not None else [])


def outcome(*, certs: Sequence[Any], arms: Sequence[Any], min_effect: float, notes: Sequence[str]) -> RepairOutcome:
    """Certified, or "no repair found" with the best candidate's evidence: its holdout test when
    certification tried one, else its race on the search items (the highest worst lower bound)."""
    out = RepairOutcome(min_effect=min_effect, tried=len(arms))
    passed = [c for c in certs if c.passed]
    best = passed[0] if passed else (certs[0] if certs else None)
    if best is not None:
        candidate = best.arm.candidate
        out.best = CertificationSummary(sha=candidate.sha, label=candidate.label, passed=best.passed,
                                        reason=best.reason, n=best.n_planned, wanted=best.n_wanted)
        out.best_model = candidate.version.model
        out.best_evidence = {k: Verdict.model_validate(e.to_dict()) for k, e in best.evidence.items()}
    elif any(a.evidence for a in arms):
        arm = max((a for a in arms if a.evidence), key=lambda a: a.worst_lower())
        out.best = CertificationSummary(sha=arm.candidate.sha, label=arm.candidate.label, passed=False,
                                        reason=f"not certified: {arm.reason or 'raced'} ({arm.n} search items)",
                                        n=arm.n)
        out.best_model = arm.candidate.version.model
        out.best_evidence = {k: Verdict.model_validate(e.to_dict()) for k, e in arm.evidence.items()}
    out.certified = bool(passed)
    if not passed:
        why = list(notes) or [c.reason for c in certs] or ["no candidate survived the search"]
        shown = ""
        if out.best is not None:
            shown = "; the best candidate (" + out.best.label + (f" on {out.best_model}" if out.best_model else "")
            shown += "): " + ", ".join(
                f"{k} {v.baseline_mean:.2f} → {v.candidate_mean:.2f} (delta {v.delta:+.3f}, lower bound "
                f"{v.lower:+.3f}, n={v.n})" for k, v in sorted(out.best_evidence.items())
                if None not in (v.baseline_mean, v.candidate_mean, v.delta, v.lower))
        out.message = (f"no repair found: no candidate of {len(arms)} was shown better than the baseline by "
                       f"{min_effect:g} on every evaluator ({'; '.join(why)}){shown}")
    return out
