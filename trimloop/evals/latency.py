"""Latency compared on paired fresh calls (issue 21): the control arm (the baseline re-run) and the
candidate on the same items, at the same time. A one-sided test that the candidate is faster by at
least `min_effect`: on the paired log-latency differences (p50: a paired t on their mean, i.e. the
geometric-mean ratio), or by a paired bootstrap of the ratio of the two p95s (p95).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from trimloop.evals.runner import ItemResult


@dataclass(frozen=True)
class LatencyTest:
    stat: str  # p50 | p95
    n: int
    before_s: float  # the control's stat
    after_s: float  # the candidate's stat
    ratio: float  # after / before (p50: geometric mean of the paired ratios)
    ratio_upper: float  # one-sided (1 − α) upper bound
    min_effect: float
    alpha: float
    method: str

    @property
    def passed(self) -> bool:
        return self.ratio_upper < 1 - self.min_effect

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


def _by_item(results: Iterable[ItemResult], ttft: bool = False) -> dict[Any, float]:
    """Item → the mean log latency (or time to first token) of its answered calls (cache hits keep
    the original's latency; their time to first token is not kept)."""
    logs: dict[Any, list[float]] = {}
    for r in results:
        value = r.ttft_s if ttft else r.latency_s
        if r.error is None and value is not None and value > 0:
            logs.setdefault(r.item_id, []).append(math.log(value))
    return {i: float(np.mean(v)) for i, v in logs.items()}


def latency_test(control: Iterable[ItemResult], candidate: Iterable[ItemResult], *, quantile: float = 0.5,
                 min_effect: float = 0.05, alpha: float = 0.05, n_boot: int = 4000, seed: int = 0,
                 ttft: bool = False) -> LatencyTest | None:
    """The candidate's latency (`ttft`: time to first token, on streamed calls) against the control's
    on the items both answered; None below 2 items."""
    base, cand = _by_item(control, ttft), _by_item(candidate, ttft)
    common = sorted((i for i in base if i in cand), key=str)
    if len(common) < 2:
        return None
    b = np.array([base[i] for i in common])
    c = np.array([cand[i] for i in common])
    n = len(common)
    if quantile == 0.5:
        d = c - b
        se = float(d.std(ddof=1) / math.sqrt(n))
        upper = float(d.mean() + stats.t.ppf(1 - alpha, n - 1) * se)
        return LatencyTest(stat="ttft p50" if ttft else "p50", n=n, before_s=float(np.exp(np.median(b))), after_s=float(np.exp(np.median(c))),
                           ratio=float(np.exp(d.mean())), ratio_upper=float(np.exp(upper)), min_effect=min_effect,
                           alpha=alpha, method="paired t on log latency")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = np.quantile(c[idx], quantile, axis=1) - np.quantile(b[idx], quantile, axis=1)
    log_ratio = float(np.quantile(c, quantile) - np.quantile(b, quantile))
    return LatencyTest(stat=("ttft " if ttft else "") + f"p{round(quantile * 100)}", n=n, before_s=float(np.exp(np.quantile(b, quantile))),
                       after_s=float(np.exp(np.quantile(c, quantile))), ratio=float(np.exp(log_ratio)),
                       ratio_upper=float(np.exp(np.quantile(boot, 1 - alpha))), min_effect=min_effect, alpha=alpha,
                       method="paired bootstrap of the p95 ratio")


@dataclass(frozen=True)
class TtftSummary:
    """Time to first token on the items both arms streamed: [control, candidate] per statistic."""

    n: int
    p50_s: tuple[float, float]
    p95_s: tuple[float, float]


def ttft_summary(control: Iterable[ItemResult], candidate: Iterable[ItemResult]) -> TtftSummary | None:
    """The two arms' time to first token on the items both answered with a streamed call (each
    item's calls by their geometric mean); None when no item has one in both arms."""
    base, cand = _by_item(control, ttft=True), _by_item(candidate, ttft=True)
    common = sorted((i for i in base if i in cand), key=str)
    if not common:
        return None
    b = np.exp([base[i] for i in common])
    c = np.exp([cand[i] for i in common])
    return TtftSummary(n=len(common), p50_s=(float(np.quantile(b, 0.5)), float(np.quantile(c, 0.5))),
                       p95_s=(float(np.quantile(b, 0.95)), float(np.quantile(c, 0.95))))


def claim_line(test: LatencyTest, cost_change: float | None) -> str:
    """"p95 1.9 s → 1.1 s, −42 %, cost +3 %": a latency claim in one line."""
    change = (test.ratio - 1) * 100
    line = f"{test.stat} {test.before_s:.3g} s → {test.after_s:.3g} s, {'−' if change < 0 else '+'}{abs(change):.0f} %"
    if cost_change is not None:
        line += f", cost {'−' if cost_change < 0 else '+'}{abs(cost_change) * 100:.0f} %"
    return line
