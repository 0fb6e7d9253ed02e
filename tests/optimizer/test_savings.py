"""Projected and realized savings against numbers worked out by hand (the arithmetic is in the
comments): calls per day × DAYS_PER_MONTH (30) × (baseline − candidate) cost per call."""

from datetime import datetime, timedelta, timezone

import pytest

from trimloop.core.defaults import DAYS_PER_MONTH
from trimloop.optimizer.savings import mean_interval, project, projection_error, realize

NOW = datetime(2026, 3, 29, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def calls(per_day: list[int]) -> list[datetime]:
    """per_day[k] calls at noon k days back (k + ½ days before NOW), so day k of the window holds them."""
    return [NOW - (k + 0.5) * DAY for k, n in enumerate(per_day) for _ in range(n)]


def test_month_is_thirty_days():
    assert DAYS_PER_MONTH == 30.0


def test_projection_by_hand():
    # traffic: 3, 2, 4, 1 calls on the last four days (first call 3.5 days ago → ceil = 4 days);
    # one call 29 days ago is outside the 28-day window, one an hour from now is after NOW: both out.
    # calls per day = (3 + 2 + 4 + 1) / 4 = 2.5
    times = calls([3, 2, 4, 1]) + [NOW - 29 * DAY, NOW + timedelta(hours=1)]
    # baseline cost per call = mean of the logged costs = (0.002 + 0.004) / 2 = 0.003
    # cost ratio on the holdout = mean candidate / mean baseline = (0.004 + 0.012)/2 ÷ (0.010 + 0.030)/2
    #                           = 0.008 / 0.020 = 0.4
    # candidate cost per call = 0.003 × 0.4 = 0.0012; saving per call = 0.003 − 0.0012 = 0.0018
    # monthly = 2.5 × 30 × 0.0018 = 0.135; daily = 2.5 × 0.0018 = 0.0045; payback = 0.09 / 0.0045 = 20 days
    s = project(call_times=times, logged_costs=[0.002, 0.004], baseline_latencies=[0.1, 0.2, 0.3, 0.4, 0.5],
                paired_costs=[(0.010, 0.004), (0.030, 0.012)], candidate_latencies=[0.1, 0.3],
                optimization_spend=0.09, now=NOW)
    assert s.window_days == 4
    assert s.calls_per_day == pytest.approx(2.5, rel=1e-12)
    assert s.baseline_cost_per_call == pytest.approx(0.003, rel=1e-12)
    assert s.cost_ratio == pytest.approx(0.4, rel=1e-12)
    assert s.candidate_cost_per_call == pytest.approx(0.0012, rel=1e-12)
    assert s.monthly == pytest.approx(0.135, rel=1e-12)
    assert s.payback_days == pytest.approx(20.0, rel=1e-12)
    assert s.optimization_spend == 0.09
    # latency percentiles, linear interpolation: p50 of 0.1…0.5 = 0.3, p95 = 0.4 + 0.8 × 0.1 = 0.48;
    # the candidate's p50 of (0.1, 0.3) = 0.2, p95 = 0.1 + 0.95 × 0.2 = 0.29
    assert s.baseline_latency_p50_s == pytest.approx(0.3) and s.baseline_latency_p95_s == pytest.approx(0.48)
    assert s.candidate_latency_p50_s == pytest.approx(0.2) and s.candidate_latency_p95_s == pytest.approx(0.29)
    # both pairs have ratio 0.4, so only the days vary in the bootstrap: resampled means of 3, 2, 4, 1
    # lie in [1, 4] calls/day → the interval lies in [1, 4] × 30 × 0.0018 = [0.054, 0.216]
    assert 0.054 <= s.monthly_low < s.monthly < s.monthly_high <= 0.216 + 1e-12


def test_no_variance_gives_a_zero_width_interval():
    # 2 calls on each of 7 days: every resample of days has mean 2; both items cost 0.6 of the baseline:
    # every resample of items has ratio 0.6. monthly = 2 × 30 × 0.005 × (1 − 0.6) = 0.12, low = high
    s = project(call_times=calls([2] * 7), logged_costs=[0.005], baseline_latencies=[],
                paired_costs=[(0.01, 0.006), (0.02, 0.012)], candidate_latencies=[],
                optimization_spend=0.0, now=NOW)
    assert s.window_days == 7 and s.calls_per_day == 2.0
    assert s.monthly == pytest.approx(0.12, rel=1e-12)
    assert s.monthly_low == pytest.approx(0.12, rel=1e-12) and s.monthly_high == pytest.approx(0.12, rel=1e-12)
    assert s.payback_days == 0.0  # nothing spent: paid back at once
    assert s.baseline_latency_p50_s is None and s.candidate_latency_p95_s is None


def test_interval_over_items_by_hand():
    # 1 call on each of 10 days (no day-to-day variance); two items of equal baseline cost with ratios
    # 0.2 and 0.6. A resample of two items is both 0.6 (¼), one of each → 0.4 (½) or both 0.2 (¼), so
    # with 2,000 resamples the 5th and 95th percentiles sit inside the ¼ tails exactly:
    #   low  = 1 × 30 × 0.01 × (1 − 0.6) = 0.12, estimate = 30 × 0.01 × (1 − 0.4) = 0.18,
    #   high = 1 × 30 × 0.01 × (1 − 0.2) = 0.24
    s = project(call_times=calls([1] * 10), logged_costs=[0.01], baseline_latencies=[],
                paired_costs=[(0.05, 0.01), (0.05, 0.03)], candidate_latencies=[],
                optimization_spend=0.36, now=NOW)
    assert s.monthly == pytest.approx(0.18, rel=1e-12)
    assert s.monthly_low == pytest.approx(0.12, rel=1e-12)
    assert s.monthly_high == pytest.approx(0.24, rel=1e-12)
    assert s.payback_days == pytest.approx(60.0, rel=1e-12)  # 0.36 / (0.18 / 30 = 0.006 a day)


def test_window_keeps_the_last_28_days():
    # one call a day for 40 days: the 28 of the last 28 days count (the first of them 27.5 days ago →
    # ceil = 28 days); calls per day = 28 / 28 = 1; monthly = 1 × 30 × (0.002 − 0.001) = 0.03
    s = project(call_times=calls([1] * 40), logged_costs=[0.002], baseline_latencies=[],
                paired_costs=[(0.002, 0.001)], candidate_latencies=[], optimization_spend=0.0, now=NOW)
    assert s.window_days == 28 and s.calls_per_day == 1.0
    assert s.monthly == pytest.approx(0.03, rel=1e-12)
    # a 7-day window: 7 calls over 7 days
    s = project(call_times=calls([1] * 40), logged_costs=[0.002], baseline_latencies=[],
                paired_costs=[(0.002, 0.001)], candidate_latencies=[], optimization_spend=0.0, now=NOW,
                window_days=7)
    assert s.window_days == 7 and s.calls_per_day == 1.0


def test_no_traffic_or_no_saving_never_pays_back():
    # no calls in the window: 0 calls per day over 1 day, saving 0, payback undefined
    s = project(call_times=[NOW - 60 * DAY], logged_costs=[0.002], baseline_latencies=[],
                paired_costs=[(0.002, 0.001)], candidate_latencies=[], optimization_spend=0.5, now=NOW)
    assert (s.window_days, s.calls_per_day, s.monthly, s.payback_days) == (1, 0.0, 0.0, None)
    # a dearer candidate: ratio 1.5, 1 call a day → monthly = 30 × 0.002 × (1 − 1.5) = −0.03, no payback
    s = project(call_times=calls([1] * 5), logged_costs=[0.002], baseline_latencies=[],
                paired_costs=[(0.002, 0.003)], candidate_latencies=[], optimization_spend=0.5, now=NOW)
    assert s.monthly == pytest.approx(-0.03, rel=1e-12) and s.payback_days is None
    with pytest.raises(ValueError, match="window_days"):
        project(call_times=[], logged_costs=[], baseline_latencies=[], paired_costs=[], candidate_latencies=[],
                optimization_spend=0.0, now=NOW, window_days=0)


def test_realized_by_hand():
    # 10 calls at 0.0005 over 5 days against a baseline at 0.002: to date 10 × 0.0015 = 0.015;
    # 10 / 5 = 2 calls a day → monthly = 2 × 30 × 0.0015 = 0.09
    r = realize(calls=10, baseline_cost_per_call=0.002, candidate_cost_per_call=0.0005, since=NOW - 5 * DAY, until=NOW)
    assert r.days == 5.0 and r.calls_per_day == 2.0
    assert r.savings_to_date == pytest.approx(0.015, rel=1e-12)
    assert r.monthly == pytest.approx(0.09, rel=1e-12)
    # six hours are too short for a monthly figure: none is made up, the reason says why
    r = realize(calls=10, baseline_cost_per_call=0.002, candidate_cost_per_call=0.0005,
                since=NOW - timedelta(hours=6), until=NOW)
    assert r.days == 0.25 and r.monthly is None and r.calls_per_day is None
    assert r.savings_to_date == pytest.approx(0.015, rel=1e-12)
    assert r.too_short == "window too short: 10 calls over 6.0 hours; a monthly figure needs at least 1 day of traffic"
    # the case: 300 calls in the 5 minutes after a deploy
    r = realize(calls=300, baseline_cost_per_call=0.002, candidate_cost_per_call=0.0005,
                since=NOW - timedelta(minutes=5), until=NOW)
    assert r.monthly is None and r.too_short.startswith("window too short: 300 calls over 5 minutes")
    # a dearer version loses money: 4 calls over 2 days at 0.003 against 0.002 → 2 × 30 × (−0.001) = −0.06
    r = realize(calls=4, baseline_cost_per_call=0.002, candidate_cost_per_call=0.003, since=NOW - 2 * DAY, until=NOW)
    assert r.savings_to_date == pytest.approx(-0.004, rel=1e-12) and r.monthly == pytest.approx(-0.06, rel=1e-12)


def test_cost_interval_and_projection_error():
    costs = [0.001, 0.002, 0.003, 0.002]
    low, high = mean_interval(len(costs), sum(costs), sum(c * c for c in costs))  # type: ignore[misc]
    # mean 0.002, sd 0.000816, t(0.975, 3) = 3.182 → half-width 0.0012992
    assert low == pytest.approx(0.002 - 0.0012992, rel=1e-4) and high == pytest.approx(0.002 + 0.0012992, rel=1e-4)
    assert mean_interval(1, 0.002, 0.000004) is None
    assert projection_error(0.0011, 0.001) == pytest.approx(0.1) and projection_error(0.001, None) is None
