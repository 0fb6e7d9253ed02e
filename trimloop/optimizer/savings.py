"""Savings from real traffic, before and after deployment, on one definition: calls per day ×
DAYS_PER_MONTH × (baseline − candidate) cost per call.

Projected (`project`): calls per day over a trailing window of the baseline's logs, the candidate's
cost per call = the baseline's logged cost per call × the holdout's cost ratio, with a bootstrap
interval over days and items; latency before and after; payback. The holdout's costs are priced
the way the provider bills them, prompt cache included (`optimizer.caching`); the saving at list
price is kept beside it (`naive_monthly`) so the evidence can say what the cache changes. Realized
(`realize`): the deployed version's logged calls and cost per call since its promotion against the
baseline's. A sampled log (sample_rate r) counts as 1 / r calls in calls per day and in the mean
cost per call."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from trimloop.core.defaults import DAYS_PER_MONTH
from trimloop.core.evidence import SavingsProjection


Savings = SavingsProjection  # what `project` returns (the record stored in a suggestion's evidence)


def monthly_saving(*, calls_per_day: float, baseline_cost_per_call: float, candidate_cost_per_call: float) -> float:
    """The one formula of a monthly saving, shared by the projection and the realized savings."""
    return calls_per_day * DAYS_PER_MONTH * (baseline_cost_per_call - candidate_cost_per_call)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def project(
    *,
    call_times: list[datetime],
    logged_costs: list[float],
    call_weights: list[float] | None = None,
    cost_weights: list[float] | None = None,
    baseline_latencies: list[float],
    paired_costs: list[tuple[float, float]],
    candidate_latencies: list[float],
    optimization_spend: float,
    now: datetime,
    window_days: int = 28,
    seed: int = 0,
    n_boot: int = 2000,
    naive_costs: list[tuple[float, float]] | None = None,
    cached_share_before: float | None = None,
    cached_share_after: float | None = None,
    cache_note: str | None = None,
) -> Savings:
    """`paired_costs` = (baseline, candidate) cost of the same items at catalog prices; their
    ratio scales the baseline's logged cost per call, so real bills stay the reference.
    `call_weights` / `cost_weights` (beside `call_times` / `logged_costs`): the calls each log
    stands for, 1 / its sample rate (default 1)."""
    if window_days < 1:
        raise ValueError("window_days must be ≥ 1")
    weights = call_weights if call_weights is not None else [1.0] * len(call_times)
    if len(weights) != len(call_times):
        raise ValueError("call_weights must have one weight per call time")
    start = now - timedelta(days=window_days)
    recent = [(t, w) for t, w in zip(call_times, weights) if start <= t <= now]
    first = min(t for t, _ in recent) if recent else now
    days = max(1, min(window_days, math.ceil((now - first).total_seconds() / 86400)))
    daily = np.zeros(days)
    for t, w in recent:
        daily[min(days - 1, int((now - t).total_seconds() // 86400))] += w
    base_cpc = (statistics.fmean(logged_costs, weights=cost_weights) if cost_weights else
                statistics.fmean(logged_costs)) if logged_costs else 0.0
    pairs = np.array(paired_costs or [(1.0, 1.0)], dtype=float)
    base_mean = pairs[:, 0].mean()
    ratio = float(pairs[:, 1].mean() / base_mean) if base_mean > 0 else 1.0
    cand_cpc = base_cpc * ratio
    per_day = float(daily.mean())
    monthly = monthly_saving(calls_per_day=per_day, baseline_cost_per_call=base_cpc, candidate_cost_per_call=cand_cpc)

    rng = np.random.default_rng(seed)
    day_idx = rng.integers(0, days, size=(n_boot, days))
    item_idx = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))
    boot_days = daily[day_idx].mean(axis=1)
    b = pairs[:, 0][item_idx].mean(axis=1)
    c = pairs[:, 1][item_idx].mean(axis=1)
    boot_ratio = np.divide(c, b, out=np.ones_like(c), where=b > 0)
    boot = boot_days * DAYS_PER_MONTH * base_cpc * (1 - boot_ratio)
    low, high = (float(v) for v in np.percentile(boot, [5, 95]))
    daily_saving = monthly / DAYS_PER_MONTH
    payback = optimization_spend / daily_saving if daily_saving > 0 else None
    naive_monthly = None
    if naive_costs:
        naive = np.array(naive_costs, dtype=float)
        naive_ratio = float(naive[:, 1].mean() / naive[:, 0].mean()) if naive[:, 0].mean() > 0 else 1.0
        naive_monthly = monthly_saving(calls_per_day=per_day, baseline_cost_per_call=base_cpc,
                                       candidate_cost_per_call=base_cpc * naive_ratio)
    return SavingsProjection(
        window_days=days, calls_per_day=per_day, baseline_cost_per_call=base_cpc,
        candidate_cost_per_call=cand_cpc, cost_ratio=ratio, monthly=monthly, monthly_low=low,
        monthly_high=high, baseline_latency_p50_s=_percentile(baseline_latencies, 50),
        baseline_latency_p95_s=_percentile(baseline_latencies, 95),
        candidate_latency_p50_s=_percentile(candidate_latencies, 50),
        candidate_latency_p95_s=_percentile(candidate_latencies, 95),
        optimization_spend=optimization_spend, payback_days=payback, naive_monthly=naive_monthly,
        cached_share_before=cached_share_before, cached_share_after=cached_share_after, cache_note=cache_note,
    )


MIN_REALIZED_DAYS = 1.0  # a monthly run rate needs a whole daily cycle of traffic behind it


@dataclass(frozen=True)
class Realized:
    days: float
    calls_per_day: float | None  # None while the window is too short to say
    savings_to_date: float
    monthly: float | None  # None while the window is too short: never extrapolated from minutes
    too_short: str | None = None  # "window too short: 300 calls over 5 minutes …"


def window_text(calls: int, days: float) -> str:
    minutes = days * 1440
    span = f"{minutes:.0f} minutes" if minutes < 120 else f"{minutes / 60:.1f} hours"
    return (f"window too short: {calls} calls over {span}; a monthly figure needs at least "
            f"{MIN_REALIZED_DAYS:g} day of traffic")


def realize(*, calls: int, baseline_cost_per_call: float, candidate_cost_per_call: float,
            since: datetime, until: datetime) -> Realized:
    """What a deployed version saved over [since, until): its `calls` at its logged cost per call against
    the baseline's. The monthly run rate is left out (with the reason) until the window covers
    MIN_REALIZED_DAYS: 300 calls in the 5 minutes after a deploy are not a rate to scale ×8640."""
    days = max((until - since).total_seconds() / 86400, 0.0)
    to_date = calls * (baseline_cost_per_call - candidate_cost_per_call)
    if days < MIN_REALIZED_DAYS:
        return Realized(days=days, calls_per_day=None, savings_to_date=to_date, monthly=None,
                        too_short=window_text(calls, days))
    per_day = calls / days
    return Realized(
        days=days, calls_per_day=per_day, savings_to_date=to_date,
        monthly=monthly_saving(calls_per_day=per_day, baseline_cost_per_call=baseline_cost_per_call,
                               candidate_cost_per_call=candidate_cost_per_call))


def mean_interval(n: int, total: float, total_sq: float, level: float = 0.95) -> tuple[float, float] | None:
    """A t-interval for a mean from its count, sum and sum of squares (what one SQL pass gives)."""
    if n < 2:
        return None
    from scipy import stats

    mean = total / n
    var = max(total_sq / n - mean * mean, 0.0) * n / (n - 1)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * math.sqrt(var / n)
    return mean - half, mean + half


def projection_error(realized: float | None, projected: float | None) -> float | None:
    """realized / projected − 1 (+0.10: the realized figure is 10 % above the projection)."""
    if realized is None or not projected:
        return None
    return realized / projected - 1.0
