"""The non-inferiority gate on simulated paired 0/1 outcomes with known truth; prints JSON.

Scenarios: true delta 0, −δ/2, −δ, −2δ; discordance 5–20 %; n from 100 to 2,000 plus the n the
power helper asks for. Checks that (1) a candidate whose true delta is −δ or worse is accepted at
most α of the time (within Monte-Carlo error), (2) at true delta 0 the power at the helper's n is
≥ 80 %, (3) the group-sequential test decides with ≥ 30 % fewer items on average than the fixed-n
test, at the same error rates. Pure numpy; run as `python -m bench.gate`.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

from trimloop.evals.sequential import sequential_design
from trimloop.evals.stats import items_needed, tango_power, tango_statistic

ALPHA, MARGIN, POWER = 0.05, 0.02, 0.8
DISCORDANCES = (0.05, 0.10, 0.20)
DELTAS = (0.0, -MARGIN / 2, -MARGIN, -2 * MARGIN)
SIZES = (100, 250, 500, 1000, 2000)
REPS = 50_000
SEQ_REPS = 40_000
POWER_REPS = 200_000  # the power rows decide a check: keep their Monte-Carlo error small
Z_ALPHA = 1.6448536269514722


def cells(d: float, delta: float) -> np.ndarray:
    """P(candidate right, baseline wrong), P(candidate wrong, baseline right), P(agree)."""
    win, loss = (d + delta) / 2, (d - delta) / 2
    return np.array([win, loss, 1.0 - d])


def fixed_accept_rate(rng: np.random.Generator, d: float, delta: float, n: int, reps: int) -> float:
    counts = rng.multinomial(n, cells(d, delta), size=reps)
    z = tango_statistic(counts[:, 0], counts[:, 1], n, -MARGIN)
    return float(np.mean(z > Z_ALPHA))


def sequential_run(rng: np.random.Generator, design, d: float, delta: float, reps: int):
    """(accept rate, mean items used) of the group-sequential design."""
    looks = np.array(design.looks)
    steps = np.diff(np.concatenate([[0], looks]))
    wins = np.zeros(reps)
    losses = np.zeros(reps)
    decided = np.zeros(reps, bool)
    accepted = np.zeros(reps, bool)
    used = np.zeros(reps)
    for k, (size, step) in enumerate(zip(looks, steps)):
        add = rng.multinomial(step, cells(d, delta), size=reps)
        wins += add[:, 0]
        losses += add[:, 1]
        z = tango_statistic(wins, losses, size, -MARGIN)
        last = k == len(looks) - 1
        up = ~decided & (z >= design.efficacy[k])
        down = ~decided & ~up & ((z <= design.futility[k]) | last)
        accepted |= up
        used[up | down] = size
        decided |= up | down
    return float(accepted.mean()), float(used.mean())


def main() -> dict:
    started = time.perf_counter()
    rng = np.random.default_rng(20240601)
    rows = []
    false_accept, power_at_zero, power_exact = 0.0, 1.0, 1.0
    savings = []
    seq_false_accept, seq_power = 0.0, 1.0
    for d in DISCORDANCES:
        n_power = items_needed(margin=MARGIN, discordance=d, alpha=ALPHA, power=POWER)
        for n in (*SIZES, n_power):
            for delta in DELTAS:
                reps = POWER_REPS if n == n_power else REPS
                rate = fixed_accept_rate(rng, d, delta, n, reps)
                rows.append({"test": "fixed", "discordance": d, "true_delta": delta, "n": n,
                             "accept_rate": round(rate, 4), "reps": reps,
                             "n_from_power_helper": n == n_power})
                if delta <= -MARGIN:
                    false_accept = max(false_accept, rate)
                if delta == 0 and n == n_power:
                    power_at_zero = min(power_at_zero, rate)
                    exact = tango_power(n, margin=MARGIN, discordance=d, alpha=ALPHA)
                    power_exact = min(power_exact, exact)
                    rows[-1]["exact_power"] = round(exact, 4)
        design = sequential_design(margin=MARGIN, discordance=d, alpha=ALPHA, power=POWER)
        for delta in DELTAS:
            rate, mean_items = sequential_run(rng, design, d, delta, SEQ_REPS)
            saving = 1.0 - mean_items / n_power
            savings.append(saving)
            if delta <= -MARGIN:
                seq_false_accept = max(seq_false_accept, rate)
            if delta == 0:
                seq_power = min(seq_power, rate)
            rows.append({"test": "sequential", "discordance": d, "true_delta": delta,
                         "n": design.looks[-1], "n_fixed": n_power, "looks": list(design.looks),
                         "accept_rate": round(rate, 4), "mean_items": round(mean_items, 1),
                         "item_saving": round(saving, 4)})
    mc_error = 2 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)
    result = {
        "alpha": ALPHA,
        "margin": MARGIN,
        "power_target": POWER,
        "method": "Tango score test (fixed n); group-sequential Tango test with power-family "
                  "(rho=2) alpha and beta spending, 8 looks, non-binding futility",
        "reps": REPS,
        "monte_carlo_error_2se": round(mc_error, 4),
        "false_accept_rate_at_margin": round(false_accept, 4),
        "power_at_zero": round(power_at_zero, 4),
        "power_at_zero_exact": round(power_exact, 4),
        "sequential_item_saving": round(float(np.mean(savings)), 4),
        "sequential_false_accept_rate_at_margin": round(seq_false_accept, 4),
        "sequential_power_at_zero": round(seq_power, 4),
        "checks": {
            "false_accept_within_alpha": false_accept <= ALPHA + mc_error,
            "power_at_zero_at_least_target": power_exact >= POWER
            and power_at_zero >= POWER - 2 * math.sqrt(POWER * (1 - POWER) / POWER_REPS),
            "sequential_saves_30_percent": float(np.mean(savings)) >= 0.30,
            "sequential_same_error_rates": seq_false_accept <= ALPHA + mc_error
            and seq_power >= POWER - 2 * math.sqrt(POWER * (1 - POWER) / SEQ_REPS),
        },
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    return result


if __name__ == "__main__":
    out = main()
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
