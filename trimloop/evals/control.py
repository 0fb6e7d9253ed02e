"""The control arm: an old version run again, through the gateway, on inputs another version answered.

One mechanism for two uses (issue 21 item 4): the post-deploy watch's paired shadow scoring (the
version a deployment replaced, re-run on a sample of the new version's live inputs) and the
baseline control arm of a certification (the baseline re-run on the items a candidate is evaluated
on). Both need the same thing: for each input, the old version's fresh output and both sides' scores
on the same evaluators, where the old output is the other side's `baseline_output` (so
`matches_baseline` compares the two answers to the same input, made at the same time).

Calls go through the gateway like any call (priced, cached, capped by the ledger); a failed call
is kept with its error and no scores, so the caller can tell it from a bad answer.

`rerun` is the mechanism both share: the old version on items, through the gateway, optionally
interleaved call by call with another version's calls on the same items (`Beside`: the candidate
of a certification), so both arms meet the provider at the same time, under the same load and the
same concurrency. The watch's `run_control` is `rerun` plus scoring both sides of a live input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trimloop.core.templates import Template
from trimloop.evals.evaluators import EvalContext, NamedEvaluator, score_output
from trimloop.evals.evaluators.base import MissingReference
from trimloop.core.errors import SpendCapReached
from trimloop.evals.runner import EvalItem, ItemResult, evaluate_one, samples_for


@dataclass(frozen=True)
class Beside:
    """Another version whose calls are interleaved with the old version's on the same items."""

    template: Template | dict[str, Any]
    model: str
    params: dict[str, Any] | None
    samples: int | None = None  # per item (runner default: 1 at temperature 0, else 3)
    on_result: Callable[[ItemResult], None] | None = None
    scope: str | None = None  # its cache scope (None: the global content-addressed cache)


@dataclass
class Rerun:
    """What `rerun` got: the old version's results and, with a `Beside`, the other version's."""

    control: list[ItemResult] = field(default_factory=list)
    beside: list[ItemResult] = field(default_factory=list)


async def rerun(*, template: Template | dict[str, Any], model: str, params: dict[str, Any] | None,
                items: Sequence[EvalItem], evaluators: Sequence[NamedEvaluator], gateway: Any,
                samples: int | None = 1, concurrency: int = 4, ledger: Any = None, scope: str | None = None,
                beside: Beside | None = None, on_result: Callable[[ItemResult], None] | None = None,
                propagate: tuple[type[BaseException], ...] = ()) -> Rerun:
    """The old version (template, model, params) run again on `items`, scored with `evaluators`
    (against each item's `baseline_output`, e.g. the logged answer). `scope` is the gateway cache
    scope of its calls (a run's control: fresh once per run). With `beside`, that version's calls
    go out interleaved with the old one's — item by item, one queue, `concurrency` in flight.
    As `evaluate_items`: a `propagate` error or a spent budget is raised once no call is in flight."""
    def version(t: Template | dict[str, Any], p: dict[str, Any] | None) -> tuple[Template, dict[str, Any]]:
        return (t if isinstance(t, Template) else Template.model_validate(t)), dict(p or {})

    old_t, old_p = version(template, params)
    limit = asyncio.Semaphore(max(1, concurrency))
    out = Rerun()

    async def one(t: Template, m: str, p: dict[str, Any], item: EvalItem, sample: int, seeded: bool,
                  where: list[ItemResult], hook: Any, in_scope: str | None) -> ItemResult:
        async with limit:
            result = await evaluate_one(template=t, model=m, params=p, item=item, sample=sample,
                                        evaluators=evaluators, gateway=gateway, ledger=ledger, seeded=seeded,
                                        propagate=propagate, scope=in_scope)
        where.append(result)
        if hook is not None:
            hook(result)
        return result

    jobs = []
    old_n, old_seeded = samples_for(old_p, samples), float(old_p.get("temperature") or 0) > 0
    if beside is not None:
        new_t, new_p = version(beside.template, beside.params)
        new_n, new_seeded = samples_for(new_p, beside.samples), float(new_p.get("temperature") or 0) > 0
    for item in items:
        jobs += [one(old_t, model, old_p, item, s, old_seeded, out.control, on_result, scope) for s in range(old_n)]
        if beside is not None:
            jobs += [one(new_t, beside.model, new_p, item, s, new_seeded, out.beside, beside.on_result, beside.scope)
                     for s in range(new_n)]
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:  # a budget that ran out matters less than anything else that went wrong
        raise next((e for e in errors if not isinstance(e, SpendCapReached)), errors[0])
    order = {item.id: n for n, item in enumerate(items)}
    out.control.sort(key=lambda r: (order[r.item_id], r.sample))
    out.beside.sort(key=lambda r: (order[r.item_id], r.sample))
    return out


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
    # the old side is scored below, against its own fresh output
    results = (await rerun(template=template, model=model, params=params, items=items, evaluators=[],
                           gateway=gateway, samples=1, concurrency=concurrency, ledger=ledger)).control
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
