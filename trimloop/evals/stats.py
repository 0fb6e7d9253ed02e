"""Paired non-inferiority statistics for baseline vs candidate scores.

The unit is the item: baseline and candidate are scored on the same items and compared through
per-item differences (candidate − baseline). With repeated samples (temperature > 0) the samples of
an item are averaged first, so the item is the cluster and samples never count as extra items.
A candidate is *non-inferior* when the lower bound of a one-sided (1 − α) interval for the mean
difference is above −margin. A repair is *superior* when that lower bound is above +min_effect:
the same test at margin −min_effect (`superiority`), so both gates share one code path. Methods:

- `tango`: Tango's score interval for paired proportions (0/1 scores, one sample per item). Good
  one-sided coverage down to a handful of discordant pairs, where Wald and the bootstrap fail.
- `t`: the paired t-interval on item differences (any scores in [0, 1]).
- `bootstrap`: the paired percentile bootstrap of item differences (seeded, so reproducible).

`items_needed` is the power helper (Nam's formula for Tango's test, the normal one for scores);
`predictive_power` the chance a test under way ends non-inferior (to stop hopeless ones early).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import optimize, stats

from trimloop.core.defaults import DEFAULT_ALPHA, DEFAULT_MARGIN, DEFAULT_MIN_EFFECT

Method = Literal["auto", "tango", "t", "bootstrap"]
PASSED = ("non-inferior", "superior")
Scores = Mapping[Hashable, Sequence[float] | float] | Sequence[float]


@dataclass(frozen=True)
class NonInferiority:
    """The evidence for one evaluator: n, means, the interval, the p-value and the verdict.

    A negative margin is a superiority test at min_effect = −margin (`test` says which): the
    verdict is then superior | not superior | inconclusive, and the p-value is of H0: delta ≤ min_effect."""

    method: str
    n: int  # items (clusters)
    samples: int  # scored outputs per arm, summed over items
    baseline_mean: float
    candidate_mean: float
    delta: float  # candidate − baseline
    lower: float  # one-sided (1 − α) lower bound = lower end of the two-sided (1 − 2α) interval
    upper: float
    margin: float
    alpha: float
    p_value: float  # of H0: delta ≤ −margin
    verdict: str  # non-inferior | inferior | inconclusive (superior | not superior | inconclusive)
    test: str = "non-inferiority"  # or superiority (margin < 0)
    min_effect: float | None = None  # −margin, on a superiority test

    @property
    def passed(self) -> bool:
        return self.verdict in PASSED

    @property
    def threshold(self) -> float:
        """The value the lower bound must clear: −margin, i.e. +min_effect on a superiority test."""
        return -self.margin

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self) | {"passed": self.passed}
        if out["min_effect"] is None:  # a non-inferiority test has none
            del out["min_effect"]
        return out


def paired_scores(baseline: Scores, candidate: Scores) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """Item-level means of both arms on their common items: (base, cand, clustered, samples).

    Sequences are paired by position; mappings item → score or list of sample scores are paired
    by item, keeping the items both arms have.
    """
    if isinstance(baseline, Mapping) != isinstance(candidate, Mapping):
        raise TypeError("give both arms as sequences (paired by position) or both as mappings")
    if not isinstance(baseline, Mapping):
        b, c = np.asarray(baseline, float), np.asarray(candidate, float)
        if b.shape != c.shape or b.ndim != 1:
            raise ValueError(f"paired arms differ in shape: baseline {b.shape}, candidate {c.shape}")
        return b, c, False, len(b)
    assert isinstance(candidate, Mapping)
    common = [k for k in baseline if k in candidate]
    as_list = lambda v: [float(v)] if isinstance(v, (int, float)) else [float(x) for x in v]  # noqa: E731
    b_samples = [as_list(baseline[k]) for k in common]
    c_samples = [as_list(candidate[k]) for k in common]
    keep = [i for i, (x, y) in enumerate(zip(b_samples, c_samples)) if x and y]
    clustered = any(len(b_samples[i]) > 1 or len(c_samples[i]) > 1 for i in keep)
    b = np.array([np.mean(b_samples[i]) for i in keep], float)
    c = np.array([np.mean(c_samples[i]) for i in keep], float)
    return b, c, clustered, sum(len(c_samples[i]) for i in keep)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0.0) | (x == 1.0)))


def tango_statistic(wins: Any, losses: Any, n: Any, delta0: float) -> np.ndarray:
    """Tango's score statistic for H0: p_cand − p_base = delta0 (vectorised over counts).

    wins = items the candidate gets right and the baseline wrong; losses the reverse.
    """
    wins, losses, n = (np.asarray(v, float) for v in (wins, losses, n))
    a = 2.0 * n
    b = -wins - losses + (2.0 * n - wins + losses) * delta0
    c = -losses * delta0 * (1.0 - delta0)
    q21 = (np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0)) - b) / (2.0 * a)
    var = n * (2.0 * q21 + delta0 * (1.0 - delta0))
    top = wins - losses - n * delta0
    safe = np.where(var > 0, var, 1.0)
    degenerate = np.where(top > 0, np.inf, np.where(top < 0, -np.inf, 0.0))
    return np.where(var > 0, top / np.sqrt(safe), degenerate)


def tango_bounds(wins: int, losses: int, n: int, alpha: float) -> tuple[float, float]:
    """Two-sided (1 − 2α) Tango interval, i.e. one-sided (1 − α) bounds for the difference."""
    z = stats.norm.ppf(1.0 - alpha)
    est = (wins - losses) / n
    eps = 1e-10

    def f(d: float, target: float) -> float:
        return float(tango_statistic(wins, losses, n, d)) - target

    lower = -1.0 if est <= -1 + eps else optimize.brentq(f, -1 + eps, min(est + eps, 1 - eps), args=(z,))
    upper = 1.0 if est >= 1 - eps else optimize.brentq(f, max(est - eps, -1 + eps), 1 - eps, args=(-z,))
    return float(lower), float(upper)


def non_inferiority(
    baseline: Scores,
    candidate: Scores,
    *,
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    method: Method = "auto",
    n_boot: int = 4000,
    seed: int = 0,
) -> NonInferiority:
    """One-sided non-inferiority of candidate vs baseline at `margin` and level `alpha` (H0:
    delta ≤ −margin). A negative margin tests superiority by at least −margin (see `superiority`)."""
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if not -1 < margin < 1:
        raise ValueError(f"margin must be in (−1, 1), got {margin}")
    b, c, clustered, samples = paired_scores(baseline, candidate)
    n = len(b)
    if n < 2:
        raise ValueError(f"need at least 2 paired items, got {n}")
    if method == "auto":
        method = "tango" if not clustered and _is_binary(b) and _is_binary(c) else "t"
    d = c - b
    delta = float(d.mean())
    if method == "tango":
        if not (_is_binary(b) and _is_binary(c)):
            raise ValueError("the tango method needs 0/1 scores with one sample per item")
        wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
        lower, upper = tango_bounds(wins, losses, n, alpha)
        p = float(stats.norm.sf(tango_statistic(wins, losses, n, -margin)))
    elif method == "t":
        se = float(d.std(ddof=1) / math.sqrt(n))
        tq = float(stats.t.ppf(1.0 - alpha, n - 1))
        lower, upper = delta - tq * se, delta + tq * se
        p = float(stats.t.sf((delta + margin) / se, n - 1)) if se > 0 else float(delta <= -margin)
    elif method == "bootstrap":
        rng = np.random.default_rng(seed)
        means = np.empty(n_boot)
        for start in range(0, n_boot, 500):  # chunks keep memory flat for big n
            idx = rng.integers(0, n, size=(min(500, n_boot - start), n))
            means[start : start + len(idx)] = d[idx].mean(axis=1)
        lower, upper = (float(v) for v in np.quantile(means, [alpha, 1.0 - alpha]))
        p = float((np.sum(means <= -margin) + 1) / (n_boot + 1))
    else:
        raise ValueError(f"unknown method {method!r}; use auto, tango, t or bootstrap")
    superiority_test = margin < 0
    words = ("superior", "not superior") if superiority_test else ("non-inferior", "inferior")
    verdict = words[0] if lower > -margin else words[1] if upper < -margin else "inconclusive"
    return NonInferiority(
        method=method, n=n, samples=samples, baseline_mean=float(b.mean()),
        candidate_mean=float(c.mean()), delta=delta, lower=float(lower), upper=float(upper),
        margin=margin, alpha=alpha, p_value=min(1.0, max(0.0, p)), verdict=verdict,
        test="superiority" if superiority_test else "non-inferiority",
        min_effect=-margin if superiority_test else None,
    )


def superiority(baseline: Scores, candidate: Scores, *, min_effect: float = DEFAULT_MIN_EFFECT,
                alpha: float = DEFAULT_ALPHA, method: Method = "auto", n_boot: int = 4000,
                seed: int = 0) -> NonInferiority:
    """One-sided superiority of candidate vs baseline by at least `min_effect` (> 0): H0: delta ≤
    min_effect, rejected when the lower bound of the one-sided (1 − α) interval is above it. It is
    `non_inferiority` at margin −min_effect: one interval, one code path for both gates."""
    if not 0 < min_effect < 1:
        raise ValueError(f"min_effect must be in (0, 1), got {min_effect}")
    return non_inferiority(baseline, candidate, margin=-min_effect, alpha=alpha, method=method, n_boot=n_boot,
                           seed=seed)


def items_needed(
    *,
    margin: float,
    discordance: float | None = None,
    sd: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    power: float = 0.8,
    true_delta: float = 0.0,
) -> int:
    """Paired items needed to show non-inferiority at `margin` with the given power.

    For 0/1 scores give `discordance` (the share of items where the two arms disagree; Nam's
    formula for Tango's test); for other scores give `sd`, the standard deviation of item
    differences.
    """
    if (discordance is None) == (sd is None):
        raise ValueError("give exactly one of discordance (0/1 scores) or sd (other scores)")
    gap = true_delta + margin
    if gap <= 0:
        raise ValueError(f"true_delta {true_delta} is at or below −margin: no sample size has power")
    za, zb = stats.norm.ppf(1 - alpha), stats.norm.ppf(power)
    if sd is not None:
        return max(2, math.ceil(((za + zb) * sd / gap) ** 2) + 1)
    assert discordance is not None
    if not abs(true_delta) < discordance <= 1:
        raise ValueError(f"discordance must be in (|true_delta|, 1], got {discordance}")
    p10, p01 = (discordance + true_delta) / 2, (discordance - true_delta) / 2
    d0 = -margin
    a, b = 2.0, -p10 - p01 + (2.0 - p10 + p01) * d0
    c = -p01 * d0 * (1.0 - d0)
    q21 = (math.sqrt(b * b - 4 * a * c) - b) / (2 * a)
    v0 = 2 * q21 + d0 * (1 - d0)
    v1 = discordance - true_delta**2
    n = max(2, math.ceil(((za * math.sqrt(v0) + zb * math.sqrt(v1)) / gap) ** 2))
    # Nam's formula is asymptotic; step up until the exact power of Tango's test reaches the target.
    for _ in range(200):
        if tango_power(n, margin=margin, discordance=discordance, true_delta=true_delta,
                       alpha=alpha) >= power:
            return n
        n = math.ceil(n * 1.005) + 1
    return n


def predictive_power(differences: Sequence[float], n_final: int, *, margin: float, alpha: float) -> float:
    """The chance that a test continued to `n_final` items ends non-inferior, given the item
    differences (candidate − baseline) seen so far: Spiegelhalter's predictive power, i.e. the
    conditional power averaged over what the data say of the true difference (flat prior, normal
    approximation). Less hasty than the conditional power "under the current trend", which at an
    early look treats a noisy estimate as the truth. Used only to stop for futility, which never
    raises the chance of a false pass."""
    d = np.asarray(differences, float)
    if len(d) < 2 or n_final <= len(d):
        raise ValueError(f"predictive power needs 2 ≤ items seen < n_final, got {len(d)} and {n_final}")
    return float(predictive_power_of(np.mean(d), np.std(d, ddof=1), len(d), n_final, margin=margin, alpha=alpha))


def predictive_power_of(mean: Any, sd: Any, n: Any, n_final: int, *, margin: float, alpha: float) -> np.ndarray:
    """`predictive_power` from the differences' mean and standard deviation (arrays welcome: the
    gate bench simulates many tests at once)."""
    mean, sd, n = np.asarray(mean, float), np.asarray(sd, float), np.asarray(n, float)
    se = sd / np.sqrt(n)
    se_final = se * np.sqrt(n / n_final)  # the standard error the final test will have
    spread = se * np.sqrt((n_final - n) / n_final)  # of the final estimate, given the data so far
    gap = mean + margin - stats.norm.ppf(1 - alpha) * se_final
    with np.errstate(divide="ignore", invalid="ignore"):
        chance = stats.norm.cdf(gap / spread)
    return np.where(spread > 0, chance, (gap > 0).astype(float))


def tango_power(n: int, *, margin: float, discordance: float, true_delta: float = 0.0,
                alpha: float = DEFAULT_ALPHA) -> float:
    """Exact power of the one-sided Tango test at n items, summing over the discordant counts."""
    p10 = (discordance + true_delta) / 2
    sd = math.sqrt(n * discordance * (1 - discordance))
    lo = max(0, int(n * discordance - 9 * sd) - 1)
    hi = min(n, int(n * discordance + 9 * sd) + 2)
    total = np.arange(lo, hi + 1)  # discordant items
    p_total = stats.binom.pmf(total, n, discordance)
    share = p10 / discordance
    wins = np.arange(0, hi + 1)
    grid_w, grid_t = np.meshgrid(wins, total)
    valid = grid_w <= grid_t
    p_w = np.where(valid, stats.binom.pmf(grid_w, grid_t, share), 0.0)
    z = tango_statistic(grid_w, np.where(valid, grid_t - grid_w, 0), n, -margin)
    accept = valid & (z > stats.norm.ppf(1 - alpha))
    return float(np.sum(p_total[:, None] * p_w * accept))
