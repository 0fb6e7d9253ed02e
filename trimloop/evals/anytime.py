"""Intervals for live signals: fixed-sample ones to show, and an anytime-valid one to decide on.

A prompt's health is re-checked after every sync, so a test that is read again and again as data
arrive would, with a fixed-sample interval, raise false alarms far more often than its α. The
decisions therefore use a **confidence sequence**: bounds that hold at every sample size at once
with probability ≥ 1 − α, however often they are looked at. For values in [0, 1] this is the
predictable plug-in empirical-Bernstein sequence of Waudby-Smith & Ramdas, "Estimating means of
bounded random variables by betting" (JRSS-B 2024, Theorem 2), with the running intersection.
It adapts to the variance (a rare failure rate gets a tight bound), needs only numpy, and is
order-dependent: feed values in the order they arrived.

The intervals shown beside each number are the usual fixed-sample ones: Wilson's for shares,
Student's t for means, a seeded percentile bootstrap for latency percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LAMBDA_CAP = 0.5  # the paper's c: bets at most half the wealth


@dataclass(frozen=True)
class Bounds:
    """An estimate with its interval; `n` values behind it."""

    n: int
    mean: float
    low: float
    high: float


def confidence_sequence(values: Sequence[float], *, alpha: float = 0.05, side: str = "both") -> Bounds:
    """The PrPl-EB confidence sequence for the mean of values in [0, 1] after all of them.

    `side="both"` spends α/2 on each bound; `"lower"` / `"upper"` give a one-sided (1 − α) bound
    (the other end is then 0 or 1)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if side not in ("both", "lower", "upper"):
        raise ValueError(f"side must be both, lower or upper, got {side!r}")
    x = np.asarray(values, float)
    n = len(x)
    if n == 0:
        return Bounds(0, math.nan, 0.0, 1.0)
    if np.any((x < 0) | (x > 1)) or not np.all(np.isfinite(x)):
        raise ValueError("confidence_sequence needs values in [0, 1]")
    level = math.log((2.0 if side == "both" else 1.0) / alpha)
    t = np.arange(1, n + 1, dtype=float)
    mu_hat = (0.5 + np.cumsum(x)) / (t + 1)  # μ̂_t, after seeing x_1..x_t
    var_hat = (0.25 + np.cumsum((x - mu_hat) ** 2)) / (t + 1)  # σ̂²_t
    mu_prev = np.concatenate(([0.5], mu_hat[:-1]))  # μ̂_{t−1}: predictable
    var_prev = np.concatenate(([0.25], var_hat[:-1]))  # σ̂²_{t−1}
    lam = np.minimum(np.sqrt(2 * level / (var_prev * t * np.log1p(t))), LAMBDA_CAP)
    psi = (-np.log1p(-lam) - lam) / 4
    v = 4 * (x - mu_prev) ** 2
    weight = np.cumsum(lam)
    centre = np.cumsum(lam * x) / weight
    width = (level + np.cumsum(v * psi)) / weight
    low = float(np.max(np.clip(centre - width, 0, 1)))  # running intersection
    high = float(np.min(np.clip(centre + width, 0, 1)))
    low, high = min(low, high), max(low, high)  # an empty intersection collapses to a point
    mean = float(x.mean())
    if side == "lower":
        high = 1.0
    elif side == "upper":
        low = 0.0
    return Bounds(n, mean, low, high)


def wilson(successes: int, n: int, *, alpha: float = 0.05) -> Bounds:
    """Wilson's score interval for a share (two-sided 1 − α)."""
    if n == 0:
        return Bounds(0, math.nan, 0.0, 1.0)
    p = successes / n
    z = float(stats.norm.ppf(1 - alpha / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Bounds(n, p, max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float], *, alpha: float = 0.05) -> Bounds:
    """The mean with Student's t interval (Wilson's when every value is 0 or 1)."""
    x = np.asarray(values, float)
    n = len(x)
    if n == 0:
        return Bounds(0, math.nan, math.nan, math.nan)
    if np.all((x == 0) | (x == 1)):
        return wilson(int(x.sum()), n, alpha=alpha)
    mean = float(x.mean())
    if n < 2:
        return Bounds(n, mean, mean, mean)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Bounds(n, mean, mean - half, mean + half)


def percentile_interval(values: Sequence[float], q: float, *, alpha: float = 0.05, n_boot: int = 1000,
                        seed: int = 0) -> Bounds:
    """The q-th percentile (0–100) with a seeded percentile-bootstrap interval."""
    x = np.asarray(values, float)
    n = len(x)
    if n == 0:
        return Bounds(0, math.nan, math.nan, math.nan)
    point = float(np.percentile(x, q))
    if n < 2:
        return Bounds(n, point, point, point)
    rng = np.random.default_rng(seed)
    boots = np.percentile(x[rng.integers(0, n, size=(n_boot, n))], q, axis=1)
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return Bounds(n, point, float(low), float(high))
