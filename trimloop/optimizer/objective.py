"""What a run optimizes (issue 21): cost per call (default) or latency (p50 or p95 of the total
time, or of the time to first token on streamed calls), each with an optional constraint on the other — "cheapest
with p95 ≤ 0.8 s" (`objective = "cost"`, `max_latency_s = 0.8`, `latency = "p95"`), "fastest at no
more than +10 % cost" (`objective = "latency"`, `max_cost_increase = 0.10`) — and whether the
baseline control arm runs (`control = "auto" | "always" | "never"`).

Latency is only ever compared on fresh calls: the baseline's logged latencies were measured under
production load, possibly weeks ago, so a latency claim needs the control arm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from trimloop.core.catalog import LOCAL_PREFIX
from trimloop.evals.evaluators import NamedEvaluator

ControlMode = Literal["auto", "always", "never"]
LatencyStat = Literal["p50", "p95", "ttft_p50", "ttft_p95"]


@dataclass(frozen=True)
class Objective:
    kind: Literal["cost", "latency"] = "cost"
    latency: LatencyStat = "p50"  # which latency the objective (or the constraint) reads
    max_latency_s: float | None = None  # with cost: the candidate's fresh latency must stay under this
    max_cost_increase: float | None = None  # with latency: the candidate may cost at most this much more
    min_effect: float = 0.05  # a latency win must be at least this share of the baseline's latency

    @property
    def quantile(self) -> float:
        return 0.95 if self.latency.endswith("p95") else 0.5

    @property
    def ttft(self) -> bool:
        """Time to first token: measured on streamed calls (the prompt's params say stream = true)."""
        return self.latency.startswith("ttft")

    @property
    def measures_latency(self) -> bool:
        return self.kind == "latency" or self.max_latency_s is not None

    def describe(self) -> str:
        """In words, for events and the evidence: "latency p95", "cost (p95 ≤ 0.8 s)"."""
        stat = self.latency.replace("_", " ")
        if self.kind == "latency":
            cap = f" (cost at most +{self.max_cost_increase:.0%})" if self.max_cost_increase is not None else ""
            return f"latency {stat}{cap}"
        return "cost" + (f" ({stat} ≤ {self.max_latency_s:g} s)" if self.max_latency_s is not None else "")

    def admits(self, est_cost: float, baseline_cost: float) -> bool:
        """Whether a candidate of this estimated cost can serve the objective: cheaper for cost;
        for latency any cost, or within `max_cost_increase` of the baseline's."""
        if self.kind == "cost":
            return est_cost < baseline_cost
        return self.max_cost_increase is None or est_cost <= baseline_cost * (1 + self.max_cost_increase)


def objective_of(config: Any) -> Objective:
    """The objective of a RunConfig."""
    return Objective(kind=config.objective, latency=config.latency, max_latency_s=config.max_latency_s,
                     max_cost_increase=config.max_cost_increase, min_effect=config.min_latency_effect)


def agreement_based(evaluators: Sequence[NamedEvaluator]) -> bool:
    """Whether any evaluator scores agreement with the baseline's own output (no gold needed)."""
    return any(n.key == "matches_baseline" or getattr(n.evaluator, "name", None) == "matches_baseline"
               or getattr(n.evaluator, "against", None) == "baseline" for n in evaluators)


def deterministic(model: str) -> bool:
    """Providers known to answer the same request the same way at temperature 0: the bundled
    llama.cpp models (460 of 460 logged outputs reproduced). Hosted providers are not."""
    return model.startswith(LOCAL_PREFIX)


def control_wanted(mode: ControlMode, objective: Objective, *, baseline_model: str, params: dict[str, Any],
                   evaluators: Sequence[NamedEvaluator], retiring: bool = False) -> tuple[bool, str]:
    """Whether the run re-runs the baseline beside its candidates, and why (for the run's events).
    A migration off a retiring model (`retiring`) does not call that model unless told to ("always")."""
    if mode == "always":
        return True, "control = \"always\""
    if retiring and mode == "auto":
        return False, "the baseline's model is retiring: its logged answers are the reference"
    if objective.measures_latency:
        if mode == "never":
            return False, "control = \"never\": latency is compared with the baseline's logged latencies (not fair)"
        return True, f"the objective reads latency ({objective.describe()}): measured on fresh paired calls"
    if mode == "never":
        return False, "control = \"never\""
    random = float(params.get("temperature") or 0) > 0
    if agreement_based(evaluators) and (random or not deterministic(baseline_model)):
        why = "it samples at temperature > 0" if random else "its provider is not known to be deterministic"
        return True, f"agreement with the baseline's outputs is scored and {why}: the control cancels its noise"
    return False, "the baseline's logged results are comparable (a deterministic model, or gold answers)"
