"""A group-sequential non-inferiority test, for racing candidates on growing slices of items.

At each look k (after n_k paired items) the test statistic Z_k for H0: delta ≤ −margin (Tango's
score for 0/1 scores, the paired t statistic otherwise) is compared with two boundaries:
Z_k ≥ efficacy_k stops and accepts (non-inferior); Z_k ≤ futility_k stops and rejects; otherwise
go on. Boundaries come from error spending: the power family α·t^ρ (ρ = 2 by default, between
Pocock and O'Brien–Fleming: the fewest items on average for a modest maximum), or Lan–DeMets
O'Brien–Fleming-type or Pocock-type, computed exactly by recursive numerical integration of
the canonical joint distribution of (Z_1 … Z_K) (Jennison & Turnbull 2000, ch. 19). Futility is
non-binding: ignoring it never raises the false-accept rate above α. The maximum sample size is
the fixed-n size (`stats.items_needed`) inflated so the power is kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, signal, stats

from trimloop.core.defaults import DEFAULT_ALPHA
from trimloop.evals.stats import Scores, _is_binary, items_needed, paired_scores, tango_statistic

_H = 0.004  # grid step on the score scale; boundary mass is split across cells exactly


def spent(spending: str | float, t: np.ndarray, total: float) -> np.ndarray:
    """Error spent by information fraction t (0 < t ≤ 1) under a spending function."""
    t = np.asarray(t, float)
    if spending == "obrien_fleming":
        return 2.0 * stats.norm.sf(stats.norm.ppf(1.0 - total / 2.0) / np.sqrt(t))
    if spending == "pocock":
        return total * np.log1p((np.e - 1.0) * t)
    rho = float(spending)
    return total * t**rho


def _tail_above(x: np.ndarray, g: np.ndarray, s: float) -> float:
    """Mass of the grid density g (on points x, step _H) above s, with the cell containing s split."""
    cells = g * _H
    k = np.searchsorted(x, s)
    frac = 0.0 if k == 0 else (x[k - 1] + _H / 2 - s) / _H if k < len(x) else 0.0
    partial = cells[k - 1] * min(max(frac, 0.0), 1.0) if 0 < k <= len(x) else 0.0
    return float(cells[k:].sum() + partial)


def _solve(x: np.ndarray, g: np.ndarray, target: float, upper: bool) -> float:
    """The threshold s whose upper (or lower) tail mass equals target."""
    total = float(g.sum() * _H)

    def f(s: float) -> float:
        tail = _tail_above(x, g, s)
        return (tail if upper else total - tail) - target

    lo, hi = x[0] - 1.0, x[-1] + 1.0
    if f(lo) * f(hi) > 0:  # target above the mass left: every path crosses
        return lo if upper else hi
    return float(optimize.brentq(f, lo, hi, xtol=1e-7))


def _truncate(x: np.ndarray, g: np.ndarray, low: float, high: float) -> np.ndarray:
    """Keep the density strictly between low and high, splitting the edge cells."""
    left = np.clip((x + _H / 2 - low) / _H, 0.0, 1.0)
    right = np.clip((high - (x - _H / 2)) / _H, 0.0, 1.0)
    return g * np.minimum(left, right)


def _crossings(t: np.ndarray, theta: float, efficacy: np.ndarray, futility: np.ndarray | None,
               beta_spend: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-look probabilities of crossing up and down, and of reaching the look, for drift theta. When `beta_spend` is given,
    the futility bounds are solved for on the way (filled into `futility`)."""
    span = theta * t[-1] + 9.0 * np.sqrt(t[-1])
    x = np.arange(min(-9.0 * np.sqrt(t[-1]), theta * t[0] - 9.0), span + _H, _H)
    up, down, reach = np.zeros(len(t)), np.zeros(len(t)), np.zeros(len(t))
    g = stats.norm.pdf(x, theta * t[0], np.sqrt(t[0]))
    for k in range(len(t)):
        if k > 0:
            dt = t[k] - t[k - 1]
            half = int(np.ceil(9.0 * np.sqrt(dt) / _H))
            grid = np.arange(-half, half + 1) * _H
            kernel = stats.norm.pdf(grid, theta * dt, np.sqrt(dt)) * _H
            g = signal.fftconvolve(g, kernel, mode="same")
            g = np.maximum(g, 0.0)
        root = np.sqrt(t[k])
        reach[k] = float(g.sum() * _H)
        hi = efficacy[k] * root
        up[k] = _tail_above(x, g, hi)
        if futility is not None:
            if beta_spend is not None:
                target = beta_spend[k] - (beta_spend[k - 1] if k else 0.0)
                futility[k] = _solve(x, g, max(target, 0.0), upper=False) / root  # raw, unclipped
            lo = min(futility[k], efficacy[k]) * root
            down[k] = float(g.sum() * _H) - _tail_above(x, g, lo)
            g = _truncate(x, g, lo, hi)
        else:
            g = _truncate(x, g, -np.inf, hi)
    return up, down, reach


def boundaries(fractions: list[float], *, alpha: float, power: float,
               spending: str | float = "obrien_fleming") -> tuple[np.ndarray, np.ndarray, float]:
    """(efficacy, futility, inflation) on the Z scale for looks at `fractions` of the maximum n."""
    t = np.asarray(fractions, float)
    if not (np.all(np.diff(t) > 0) and t[0] > 0 and abs(t[-1] - 1.0) < 1e-12):
        raise ValueError(f"look fractions must increase to 1, got {fractions}")
    a_spend = spent(spending, t, alpha)
    b_spend = spent(spending, t, 1.0 - power)
    efficacy = np.full(len(t), np.inf)
    # Efficacy bounds under H0 (drift 0), ignoring futility (non-binding), one look at a time.
    for k in range(len(t)):
        target = a_spend[k] - (a_spend[k - 1] if k else 0.0)

        def excess(c: float, k: int = k, target: float = target) -> float:
            trial = efficacy.copy()
            trial[k] = c
            return _crossings(t[: k + 1], 0.0, trial[: k + 1], None)[0][k] - target

        efficacy[k] = optimize.brentq(excess, 0.0, 12.0, xtol=1e-6)
    fixed_drift = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)

    def gap(inflation: float) -> float:
        futility = np.zeros(len(t))
        reach = _crossings(t, fixed_drift * np.sqrt(inflation), efficacy, futility, b_spend)[2]
        if reach[-1] < 1e-3:  # (almost) every path stopped before the last look
            return 1.0
        # The boundaries must meet at the last look; meeting earlier also ends the design.
        return float(np.max(futility - efficacy))

    inflation = optimize.brentq(gap, 1.0, 3.0, xtol=1e-5) if len(t) > 1 else 1.0
    futility = np.zeros(len(t))
    _crossings(t, fixed_drift * np.sqrt(inflation), efficacy, futility, b_spend)
    futility = np.minimum(futility, efficacy)
    futility[-1] = efficacy[-1]
    return efficacy, futility, float(inflation)


@dataclass(frozen=True)
class SequentialDecision:
    look: int  # 1-based; 0 before the first look
    n: int
    z: float
    decision: str  # non-inferior | inferior | continue


@dataclass(frozen=True)
class SequentialDesign:
    """Looks (cumulative paired items) with their boundaries; `decide` applies them."""

    margin: float
    alpha: float
    power: float
    spending: str
    n_fixed: int
    inflation: float
    looks: tuple[int, ...]
    efficacy: tuple[float, ...]
    futility: tuple[float, ...]

    def decide(self, z: float, look: int) -> str:
        k = look - 1
        if z >= self.efficacy[k]:
            return "non-inferior"
        if z <= self.futility[k] or look == len(self.looks):
            return "inferior"
        return "continue"

    def statistic(self, baseline: Scores, candidate: Scores) -> tuple[float, int]:
        """Z for H0: delta ≤ −margin on the items so far, and the number of items."""
        b, c, clustered, _ = paired_scores(baseline, candidate)
        d = c - b
        n = len(d)
        if n < 2:
            return 0.0, n
        if not clustered and _is_binary(b) and _is_binary(c):
            return float(tango_statistic(np.sum(d > 0), np.sum(d < 0), n, -self.margin)), n
        se = d.std(ddof=1) / np.sqrt(n)
        return (float((d.mean() + self.margin) / se) if se > 0 else float(np.sign(d.mean() + self.margin) * np.inf)), n

    def test(self, baseline: Scores, candidate: Scores) -> SequentialDecision:
        """Apply the boundaries of the last look reached by the items given so far."""
        z, n = self.statistic(baseline, candidate)
        reached = [k for k, size in enumerate(self.looks, 1) if size <= n]
        if not reached:
            return SequentialDecision(0, n, z, "continue")
        return SequentialDecision(reached[-1], n, z, self.decide(z, reached[-1]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sequential_design(
    *,
    margin: float,
    discordance: float | None = None,
    sd: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = 0.8,
    looks: int = 8,
    spending: str | float = 2.0,
) -> SequentialDesign:
    """A K-look design with the same α and power as the fixed-n test (see `items_needed`)."""
    if looks < 1:
        raise ValueError(f"looks must be ≥ 1, got {looks}")
    n_fixed = items_needed(margin=margin, discordance=discordance, sd=sd, alpha=alpha, power=power)
    fractions = [(k + 1) / looks for k in range(looks)]
    efficacy, futility, inflation = boundaries(fractions, alpha=alpha, power=power, spending=spending)
    n_max = int(np.ceil(n_fixed * inflation))
    sizes = tuple(max(2, int(round(f * n_max))) for f in fractions)
    return SequentialDesign(
        margin=margin, alpha=alpha, power=power, spending=str(spending), n_fixed=n_fixed,
        inflation=inflation, looks=sizes, efficacy=tuple(map(float, efficacy)),
        futility=tuple(map(float, futility)),
    )
