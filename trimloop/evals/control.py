"""The control arm: an old version run again, through the gateway, on inputs another version answered.

One mechanism for two uses (issue 21 item 4): the post-deploy watch's paired shadow scoring (the
version a deployment replaced, re-run on a sample of the new version's live inputs) and the
baseline control arm of a certification (the baseline re-run on the items a candidate is evaluated
on). Both need the same thing: for each input, the old version's fresh output and both sides' scores
on the same evaluators, where the old output is the other side's `baseline_output` (so
`matches_baseline` compares the two answers to the same input, made at the same time).

Calls go through the gateway like any call (priced, cached, capped by the ledger); a failed call
is kept with its error and no scores, so the caller can tell it from a bad answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trimloop.core.templates import Template
from trimloop.evals.evaluators import EvalContext, NamedEvaluator, score_output
from trimloop.evals.evaluators.base import MissingReference
from trimloop.evals.runner import EvalItem, evaluate_items


@dataclass(frozen=True)
class Answered:
    """One input the other side already answered: its output and the gold answer, if any."""

    id: int | str
    inputs: dict[str, Any]
    output: str | None
    expected: str | None = None


@dataclass(frozen=True)
class ControlPair:
    """Both sides' scores on one input (evaluators that could not score it are left out)."""

    id: int | str
    new_scores: dict[str, float] = field(default_factory=dict)
    old_scores: dict[str, float] = field(default_factory=dict)
    old_output: str | None = None
    cost: float = 0.0
    error: str | None = None


async def score_lenient(evaluators: Sequence[NamedEvaluator], ctx: EvalContext) -> dict[str, float]:
    """Scores of the evaluators that can score this output (one that needs a reference the item
    lacks, e.g. gold on a log without reviewer feedback, is skipped, not scored 0)."""
    out: dict[str, float] = {}
    for named in evaluators:
        try:
            scores = await score_output([named], ctx)
        except MissingReference:
            continue
        out[named.key] = scores[named.key].value
    return out


async def run_control(*, template: Template | dict[str, Any], model: str, params: dict[str, Any] | None,
                      answered: Sequence[Answered], evaluators: Sequence[NamedEvaluator], gateway: Any,
                      concurrency: int = 4, ledger: Any = None) -> list[ControlPair]:
    """Run the old version (template, model, params) on each answered input and score both sides."""
    items = [EvalItem(id=a.id, inputs=a.inputs, expected=a.expected) for a in answered]
    # the old side is scored on what needs no other answer; its baseline is its own output
    results = await evaluate_items(template=template, model=model, params=params, items=items, evaluators=[],
                                   gateway=gateway, samples=1, concurrency=concurrency, ledger=ledger)
    pairs = []
    for a, result in zip(answered, results, strict=True):
        if result.error is not None or result.output is None or a.output is None:
            pairs.append(ControlPair(a.id, old_output=result.output, cost=result.cost,
                                     error=result.error or "the new version logged no output"))
            continue
        old = await score_lenient(evaluators, EvalContext(
            output=result.output, inputs=a.inputs, expected=a.expected, baseline_output=result.output,
            item_id=a.id, gateway=gateway, ledger=ledger))
        new = await score_lenient(evaluators, EvalContext(
            output=a.output, inputs=a.inputs, expected=a.expected, baseline_output=result.output,
            item_id=a.id, gateway=gateway, ledger=ledger))
        keys = old.keys() & new.keys()
        pairs.append(ControlPair(a.id, new_scores={k: new[k] for k in keys}, old_scores={k: old[k] for k in keys},
                                 old_output=result.output, cost=result.cost))
    return pairs
