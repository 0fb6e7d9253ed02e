"""One run's context: what search, certification and recording share, handed over whole (as
DSPy's `compile(student, *, trainset, valset)` gets its data) instead of a dozen keyword arguments."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trimloop.core.defaults import DEFAULT_ALPHA, DEFAULT_MARGIN
from trimloop.core.ledger import Ledger
from trimloop.evals.evaluators import NamedEvaluator
from trimloop.evals.runner import EvalItem, ItemResult, Trials
from trimloop.optimizer.spec import VersionSpec

Emit = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class RunContext:
    """The baseline and its results on the run's items (search split, holdout), the evaluators, the
    gateway, ledger and event sink, and the test's settings (margin, α, per-evaluator margins)."""

    baseline: VersionSpec
    search_items: Sequence[EvalItem]
    holdout_items: Sequence[EvalItem]
    baseline_results: Mapping[Any, ItemResult]  # the baseline on every item, by item id
    evaluators: Sequence[NamedEvaluator]
    gateway: Any
    ledger: Ledger | None = None
    emit: Emit | None = None
    margin: float = DEFAULT_MARGIN
    alpha: float = DEFAULT_ALPHA
    margins: Mapping[str, float] = field(default_factory=dict)  # per-evaluator overrides of margin
    # A repair (optimizer.repair): every evaluator must be superior by its min effect; the search and
    # certification then use margin −min_effect, which is that superiority test (evals.stats).
    repair: bool = False
    power: float = 0.8
    samples: int | None = None  # per item at temperature > 0 (runner default: 3)
    concurrency: int = 4
    seed: int = 0
    # The baseline control arm (issue 21): the baseline re-run on the items each candidate is
    # evaluated on, interleaved with its calls; comparisons are then against these fresh results.
    control: bool = False
    control_scope: str | None = "control"  # the gateway cache scope of control calls (run.py: one per run)
    candidate_scope: str | None = None  # of candidate calls (set when latency is compared: fresh too)
    objective: Any = None  # optimizer.objective.Objective; None: cost
    controls: Trials = field(default_factory=Trials)  # the control's results so far, by item (filled as it runs)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if self.repair:
            if not all(m < 0 for m in (self.margin, *self.margins.values())):
                raise ValueError("a repair's margins are −min_effect: negative (min_effect > 0)")
        elif not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")

    @property
    def keys(self) -> list[str]:
        return [n.key for n in self.evaluators]

    def margin_of(self, key: str) -> float:
        return self.margins.get(key, self.margin)

    def baseline_on(self, items: Sequence[EvalItem]) -> dict[Any, ItemResult]:
        return {i.id: self.baseline_results[i.id] for i in items}

    def keep_control(self, result: ItemResult) -> None:
        """Record a control result, once per item and sample (a later arm on the item reuses it)."""
        if all(r.sample != result.sample for r in self.controls.get(result.item_id, [])):
            self.controls.add(result)

    def control_on(self, items: Sequence[EvalItem]) -> dict[Any, ItemResult]:
        """The control on these items as one result per item (scores: the mean over its samples)."""
        out = {}
        for item in items:
            rs = [r for r in self.controls.get(item.id, [])]
            if rs:
                keys = {k for r in rs for k in r.scores}
                out[item.id] = ItemResult(item_id=item.id, sample=0, output=rs[0].output,
                                          scores={k: sum(r.scores.get(k, 0.0) for r in rs) / len(rs) for k in keys},
                                          latency_s=rs[0].latency_s, cost=rs[0].cost, error=rs[0].error)
        return out

    def say(self, kind: str, data: dict[str, Any]) -> None:
        if self.emit is not None:
            self.emit(kind, data)
