"""Arms of a race: one candidate's trials so far, and the paired evidence against the baseline."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from trimloop.core.status import CandidateStatus
from trimloop.evals.runner import ItemResult, Trials
from trimloop.evals.stats import NonInferiority, non_inferiority
from trimloop.optimizer.spec import CandidateSpec


@dataclass
class Arm:
    candidate: CandidateSpec
    est_cost: float  # estimated cost per call before any evaluation, for ordering
    results: Trials = field(default_factory=Trials)
    status: CandidateStatus = CandidateStatus.racing
    reason: str = ""
    evidence: dict[str, NonInferiority] = field(default_factory=dict)
    rung: int = 0
    # latency objectives: its measured latency / the control's on the same items (paired, geometric
    # mean; below 1 is faster), set by the search after each look
    speed_ratio: float | None = None

    def add(self, result: ItemResult) -> None:
        self.results.add(result)

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def calls(self) -> int:
        return self.results.calls

    @property
    def cost_per_call(self) -> float | None:
        return self.results.cost_per_call

    @property
    def latency_p50(self) -> float | None:
        return self.results.latency_p50

    def saving(self, baseline_cost: float) -> float:
        """The share of the baseline's cost per call this arm would save, by its estimate (≥ 0)."""
        return max(0.0, 1 - self.est_cost / baseline_cost) if baseline_cost > 0 else 0.0

    def scores(self, key: str) -> dict[Any, list[float]]:
        return self.results.scores(key)

    def mean_score(self, key: str) -> float | None:
        return self.results.mean_score(key)

    def worst_lower(self) -> float:
        return min((e.lower for e in self.evidence.values()), default=float("-inf"))

    def summary(self) -> dict[str, Any]:
        """The race so far, shaped as core.evidence.CandidateScores (the candidate.scored event, Candidate.scores)."""
        return {
            "sha": self.candidate.sha,
            "label": self.candidate.label,
            "lineage": list(self.candidate.lineage),
            "model": self.candidate.version.model,
            "status": self.status,
            "reason": self.reason,
            "n": self.n,
            "calls": self.calls,
            "est_cost": self.est_cost,
            "cost_per_call": self.cost_per_call,
            "latency_p50_s": self.latency_p50,
            **({"latency_ratio": self.speed_ratio} if self.speed_ratio is not None else {}),
            "evidence": {k: e.to_dict() for k, e in self.evidence.items()},
        }


def compare(
    baseline: dict[Any, list[float]], candidate: dict[Any, list[float]], *, margin: float, alpha: float
) -> NonInferiority | None:
    """Paired evidence on the items both arms have; None with fewer than 2 common items."""
    common = [k for k in candidate if k in baseline]
    if len(common) < 2:
        return None
    b = {k: baseline[k] for k in common}
    c = {k: candidate[k] for k in common}
    return non_inferiority(b, c, margin=margin, alpha=alpha)


def pareto_front(arms: list[Arm], keys: list[str]) -> list[Arm]:
    """Arms not dominated on (mean score over evaluators ↑, cost per call ↓, latency p50 ↓)."""
    def point(arm: Arm) -> tuple[float, float, float]:
        means = [arm.mean_score(k) for k in keys]
        score = statistics.fmean(m for m in means if m is not None) if any(m is not None for m in means) else 0.0
        return score, arm.cost_per_call or float("inf"), arm.latency_p50 or float("inf")

    points = {id(a): point(a) for a in arms if a.n}
    front = []
    for arm in arms:
        if id(arm) not in points:
            continue
        s, c, lat = points[id(arm)]
        dominated = any(
            (s2 >= s and c2 <= c and l2 <= lat) and (s2 > s or c2 < c or l2 < lat)
            for other, (s2, c2, l2) in ((o, points[id(o)]) for o in arms if id(o) in points)
            if other is not arm
        )
        if not dominated:
            front.append(arm)
    return front
