"""Non-inferiority statistics: coverage with fixed seeds, edge cases, clustering, power helper."""

from __future__ import annotations

import numpy as np
import pytest

from trimloop.evals.stats import (
    items_needed, non_inferiority, paired_scores, tango_bounds, tango_power, tango_statistic,
)


def paired_binary(rng, n, discordance, delta, base_rate=0.7):
    """0/1 scores with a chosen discordance and true difference (candidate − baseline)."""
    u = rng.random(n)
    win, loss = (discordance + delta) / 2, (discordance - delta) / 2
    base = (rng.random(n) < base_rate).astype(float)
    cand = base.copy()
    cand[u < win] = 1.0
    base[u < win] = 0.0
    cand[(u >= win) & (u < win + loss)] = 0.0
    base[(u >= win) & (u < win + loss)] = 1.0
    return base, cand


@pytest.mark.parametrize("method", ["tango", "t"])
def test_one_sided_lower_bound_covers_the_true_delta(method: str) -> None:
    rng = np.random.default_rng(7)
    true_delta, hits, reps = -0.02, 0, 1500
    for _ in range(reps):
        base, cand = paired_binary(rng, 400, 0.12, true_delta)
        hits += non_inferiority(base, cand, method=method, alpha=0.05).lower <= true_delta
    assert 0.93 <= hits / reps <= 0.97


def test_bootstrap_lower_bound_covers_for_continuous_scores() -> None:
    rng = np.random.default_rng(11)
    hits, reps = 0, 300
    for _ in range(reps):
        base = rng.beta(5, 2, 300)
        cand = np.clip(base - 0.01 + rng.normal(0, 0.1, 300), 0, 1)
        true = float(np.mean(np.clip(base - 0.01 + rng.normal(0, 0.1, (50, 300)), 0, 1)) - np.mean(base))
        hits += non_inferiority(base, cand, method="bootstrap", n_boot=1000, seed=1).lower <= true
    assert 0.91 <= hits / reps <= 0.99


def test_auto_picks_tango_for_binary_and_t_otherwise() -> None:
    assert non_inferiority([1, 0, 1, 1], [1, 0, 1, 0]).method == "tango"
    assert non_inferiority([0.5, 0.2, 1.0], [0.4, 0.3, 1.0]).method == "t"


def test_verdicts_and_p_value_agree_with_the_bound() -> None:
    rng = np.random.default_rng(3)
    good = non_inferiority(*paired_binary(rng, 2000, 0.05, 0.0), margin=0.02)
    assert good.verdict == "non-inferior" and good.passed and good.p_value < 0.05
    bad = non_inferiority(*paired_binary(rng, 2000, 0.2, -0.08), margin=0.02)
    assert bad.verdict == "inferior" and bad.upper < -0.02 and bad.p_value > 0.5
    unsure = non_inferiority(*paired_binary(rng, 100, 0.2, -0.01), margin=0.02)
    assert unsure.verdict == "inconclusive" and unsure.lower < -0.02 < unsure.upper
    assert unsure.to_dict()["passed"] is False


def test_tango_is_not_fooled_by_few_items_that_all_agree() -> None:
    ones = [1.0] * 20
    # The t-interval collapses to [0, 0] when every difference is 0; Tango's score interval does not.
    assert non_inferiority(ones, ones, method="t").verdict == "non-inferior"
    tango = non_inferiority(ones, ones, method="tango")
    assert tango.verdict == "inconclusive" and tango.lower < -0.1


def test_tango_bounds_bracket_the_estimate_and_statistic_is_monotone() -> None:
    lower, upper = tango_bounds(40, 20, 160, 0.025)
    assert lower < 20 / 160 < upper and 0.02 < lower < 0.05 and 0.2 < upper < 0.24
    assert tango_bounds(0, 0, 50, 0.05)[0] < 0 < tango_bounds(0, 0, 50, 0.05)[1]
    z = tango_statistic(10, 30, 500, np.array([-0.1, -0.05, -0.02]))
    assert np.all(np.diff(z) < 0)
    assert tango_statistic(0, 0, 10, 0.0) == 0.0  # degenerate: no warning, no nan


def test_repeated_samples_are_clustered_by_item() -> None:
    base = {"a": [1, 1, 0], "b": [0, 0, 0], "c": [1, 1, 1], "d": [1, 0, 1]}
    cand = {"a": [1, 0], "b": [0, 1], "c": [1, 1], "d": [1, 1], "z": [1]}
    b, c, clustered, samples = paired_scores(base, cand)
    assert clustered and samples == 8 and len(b) == 4  # "z" has no baseline: dropped
    result = non_inferiority(base, cand)
    assert result.method == "t" and result.n == 4 and result.samples == 8


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        non_inferiority([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="at least 2"):
        non_inferiority([1], [1])
    with pytest.raises(TypeError):
        non_inferiority({"a": 1}, [1])
    with pytest.raises(ValueError, match="0/1"):
        non_inferiority([0.5, 1], [1, 1], method="tango")


def test_items_needed_reaches_the_power_and_grows_with_discordance() -> None:
    sizes = [items_needed(margin=0.02, discordance=d) for d in (0.05, 0.1, 0.2)]
    assert sizes == sorted(sizes) and 700 < sizes[0] < 1000
    for d, n in zip((0.05, 0.1, 0.2), sizes):
        assert tango_power(n, margin=0.02, discordance=d) >= 0.8
        assert tango_power(int(n * 0.85), margin=0.02, discordance=d) < 0.8
    assert items_needed(margin=0.05, sd=0.3) == pytest.approx(((1.6449 + 0.8416) * 0.3 / 0.05) ** 2, abs=2)
    with pytest.raises(ValueError, match="exactly one"):
        items_needed(margin=0.02)
    with pytest.raises(ValueError, match="no sample size"):
        items_needed(margin=0.02, discordance=0.1, true_delta=-0.03)


def test_superiority_is_the_non_inferiority_test_at_margin_minus_the_min_effect():
    from trimloop.evals.stats import superiority

    base = [0.0] * 70 + [1.0] * 30
    better = [1.0] * 60 + [0.0] * 10 + [1.0] * 30  # fixes 60 of the 70 misses, breaks none
    e = superiority(base, better, min_effect=0.05)
    same = non_inferiority(base, better, margin=-0.05)
    assert (e.lower, e.upper, e.p_value, e.method) == (same.lower, same.upper, same.p_value, same.method)
    assert e.test == "superiority" and e.min_effect == 0.05 and e.threshold == 0.05
    assert e.verdict == "superior" and e.passed and e.lower > 0.05 and e.p_value < 0.05
    slight = [1.0] * 3 + [0.0] * 67 + [1.0] * 30  # three points better: not shown better by five
    s = superiority(base, slight, min_effect=0.05)
    assert s.verdict in ("not superior", "inconclusive") and not s.passed and s.lower <= 0.05
    assert superiority(base, [0.0] * 100, min_effect=0.05).verdict == "not superior"
    assert non_inferiority(base, slight, margin=0.02).test == "non-inferiority"
    with pytest.raises(ValueError, match="min_effect"):
        superiority(base, better, min_effect=0.0)
