"""The group-sequential design: textbook boundaries, early decisions, error rates by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from trimloop.evals.sequential import boundaries, sequential_design, spent


def test_obrien_fleming_boundaries_match_the_textbook() -> None:
    # Lan-DeMets O'Brien-Fleming spending, one-sided alpha 0.05, 5 equally spaced looks.
    efficacy, futility, inflation = boundaries([0.2, 0.4, 0.6, 0.8, 1.0], alpha=0.05, power=0.8,
                                               spending="obrien_fleming")
    assert efficacy == pytest.approx([4.23, 2.89, 2.30, 1.96, 1.74], abs=0.02)
    assert np.all(futility <= efficacy) and futility[-1] == efficacy[-1]
    assert 1.0 < inflation < 1.3


def test_spending_functions_spend_everything_by_the_end() -> None:
    for kind in ("obrien_fleming", "pocock", 2.0):
        assert spent(kind, np.array([1.0]), 0.05)[0] == pytest.approx(0.05)
        assert np.all(np.diff(spent(kind, np.linspace(0.1, 1, 10), 0.05)) > 0)


def test_design_decides_early_on_clear_cases() -> None:
    design = sequential_design(margin=0.02, discordance=0.1)
    assert design.looks[-1] > design.n_fixed and len(design.looks) == 8
    rng = np.random.default_rng(5)
    first = design.looks[0]
    base = rng.integers(0, 2, first).astype(float)
    same = design.test(base, base.copy())
    worse = base.copy()
    worse[: first // 4] = 0.0
    assert same.look == 1
    assert design.test(base, worse).decision == "inferior"
    assert design.test(base[:10], base[:10]).decision == "continue"
    assert design.test(base[:10], base[:10]).look == 0
    assert design.decide(-5.0, len(design.looks)) == "inferior"
    assert design.decide(10.0, 1) == "non-inferior"


def test_sequential_error_rates_by_simulation() -> None:
    design = sequential_design(margin=0.02, discordance=0.1, looks=4)
    rng = np.random.default_rng(2)

    def accept_rate(delta: float, reps: int = 800) -> float:
        win, loss = (0.1 + delta) / 2, (0.1 - delta) / 2
        accepted = 0
        for _ in range(reps):
            u = rng.random(design.looks[-1])
            d = np.where(u < win, 1.0, np.where(u < win + loss, -1.0, 0.0))
            for k, n in enumerate(design.looks, 1):
                z = design.statistic((d[:n] < 0).astype(float), (d[:n] > 0).astype(float))[0]
                decision = design.decide(z, k)
                if decision != "continue":
                    accepted += decision == "non-inferior"
                    break
        return accepted / reps

    assert accept_rate(-0.02) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 800)
    assert accept_rate(0.0) >= 0.8 - 2 * np.sqrt(0.8 * 0.2 / 800)
