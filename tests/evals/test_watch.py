"""The watch's statistics: the betting confidence sequence keeps its error rate at every look, and
the verdicts and live signals read what they should."""

from __future__ import annotations

import numpy as np
import pytest

from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.watch import (betting_bounds, log_signals, overall, paired_check, per_signal_alpha,
                                  unpaired_check, watch_policy)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_the_sequence_covers_the_mean_at_every_look_at_least_one_minus_alpha(p):
    rng = np.random.default_rng(7)
    alpha, streams, n = 0.1, 400, 600
    misses_low = misses_high = 0
    for _ in range(streams):
        lower, upper = betting_bounds(rng.binomial(1, p, n), alpha)
        misses_low += bool((lower > p).any())
        misses_high += bool((upper < p).any())
    assert misses_low / streams <= alpha and misses_high / streams <= alpha


def test_bounds_narrow_and_never_widen():
    x = np.random.default_rng(1).binomial(1, 0.8, 2000)
    lower, upper = betting_bounds(x, 0.05)
    assert (np.diff(lower) >= 0).all() and (np.diff(upper) <= 0).all()
    assert upper[99] - lower[99] > upper[-1] - lower[-1]
    assert lower[-1] < 0.8 < upper[-1] and upper[-1] - lower[-1] < 0.1


def test_verdicts():
    good, bad = [1.0] * 9 * 40 + [0.0] * 40, [1.0, 0.0] * 200
    assert unpaired_check("label", bad, good, alpha=0.05, margin=0.02).verdict == "regressed"
    assert unpaired_check("label", good[:20], good[:20], alpha=0.05, margin=0.02).verdict == "inconclusive"
    same = paired_check("label", [1.0] * 400, [1.0] * 400, alpha=0.05, margin=0.05)
    assert same.verdict == "holding" and same.low is not None and -0.05 < same.low <= 0 <= same.high
    worse = paired_check("label", [1.0, 0.0] * 100, [1.0] * 200, alpha=0.05, margin=0.05)
    assert worse.verdict == "regressed" and worse.mean_new == 0.5 and worse.mean_old == 1.0
    assert overall([same, worse]) == "regressed" and overall([same]) == "holding" and overall([]) == "inconclusive"
    assert per_signal_alpha(0.05, 4) == pytest.approx(0.0125)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_check("label", [1.0], [], alpha=0.05, margin=0.02)


def test_live_signals_of_a_log():
    evaluators = build_evaluators({"label": {"labels": ["billing", "bug"]}}, where="test")
    feedback = [{"name": "expected", "value": "bug"}, {"name": "thumbs", "value": True},
                {"name": "rating", "value": 0.5}, {"name": "comment", "value": "meh"}, {"name": "stars", "value": 4}]
    signals = log_signals(output="bug", inputs={}, feedback=feedback, evaluators=evaluators, expected_from="expected")
    assert signals == {"label": 1.0, "feedback:thumbs": 1.0, "feedback:rating": 0.5}
    # no gold on the log: the label evaluator cannot score it, and is left out (not scored 0)
    assert log_signals(output="bug", inputs={}, feedback=[], evaluators=evaluators, expected_from="expected") == {}


def test_watch_policy_errors_name_the_key(tmp_path):
    settings = Settings(home=tmp_path, prompts={"p": {"watch": {"shadow_per_day": -1}}})
    with pytest.raises(ConfigError) as caught:
        watch_policy(settings, "p")
    assert "shadow_per_day" in caught.value.message and caught.value.where.endswith("[prompts.p].watch")
    assert watch_policy(Settings(home=tmp_path), "p").on_regression == "alert"
    with pytest.raises(ConfigError, match="must be a table"):
        watch_policy(Settings(home=tmp_path, prompts={"p": {"watch": "rollback"}}), "p")


def test_the_sequence_after_n_items_is_the_one_computed_on_the_first_n():
    """Predictable bets: the bench evaluates every look from one pass over the stream."""
    x = np.random.default_rng(2).binomial(1, 0.7, 500).astype(float)
    full_low, full_high = betting_bounds(x, 0.05)
    for n in (30, 137, 500):
        low, high = betting_bounds(x[:n], 0.05)
        assert low[-1] == pytest.approx(full_low[n - 1]) and high[-1] == pytest.approx(full_high[n - 1])


def test_a_fixed_pre_deploy_window_is_bounded_once_and_tighter():
    old = np.random.default_rng(3).binomial(1, 0.9, 2000).astype(float)
    seq_low, seq_high = betting_bounds(old, 0.025)
    fix_low, fix_high = betting_bounds(old, 0.025, fixed=True)
    assert seq_low[-1] < fix_low[-1] < 0.9 < fix_high[-1] < seq_high[-1]
    rng = np.random.default_rng(4)  # and it still covers: 400 samples at one-sided 0.1
    misses = sum(bool(betting_bounds(rng.binomial(1, 0.9, 500), 0.1, fixed=True)[0][-1] > 0.9) for _ in range(400))
    assert misses / 400 <= 0.1
