"""The non-inferiority gate on simulated paired 0/1 outcomes with known truth; prints JSON.

Scenarios: true delta 0, −δ/2, −δ, −2δ; discordance 5–20 %; n from 100 to 2,000 plus the n the
power helper asks for. Checks that (1) a candidate whose true delta is −δ or worse is accepted at
most α of the time (within Monte-Carlo error), (2) at true delta 0 the power at the helper's n is
≥ 80 %, (3) the group-sequential test decides with ≥ 30 % fewer items on average than the fixed-n
test, at the same error rates; (4) certification's early stop for hopeless candidates (predictive
power below `certify.HOPELESS`) costs at most 2 points of power at parity, never raises false
accepts, and saves items on candidates that would fail. Pure numpy; run as `python -m bench.gate`.
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
from scipy.stats import norm

from trimloop.evals.sequential import sequential_design
from trimloop.evals.stats import items_needed, predictive_power_of, tango_power, tango_statistic
from trimloop.optimizer.certify import HOPELESS, look_size

ALPHA, MARGIN, POWER = 0.05, 0.02, 0.8
DISCORDANCES = (0.05, 0.10, 0.20)
DELTAS = (0.0, -MARGIN / 2, -MARGIN, -2 * MARGIN)
SIZES = (100, 250, 500, 1000, 2000)
REPS = 50_000
SEQ_REPS = 40_000
POWER_REPS = 200_000  # the power rows decide a check: keep their Monte-Carlo error small
Z_ALPHA = 1.6448536269514722
# certification as the optimizer runs it: margin 0.03, α 0.05 split over the 2 candidates certified,
# the holdout capped at sst2's 1,548 items, looks every max(50, n / LOOKS) items
CERT_ALPHA, CERT_MARGIN, CERT_CAP, CERT_REPS = 0.025, 0.03, 1548, 40_000
CERT_DISCORDANCES = (0.08, 0.15)
CERT_DELTAS = (0.0, -0.015, -0.027, -0.03, -0.045)


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


def certification_run(rng: np.random.Generator, d: float, delta: float, n: int, reps: int):
    """(pass rate without the early stop, pass rate with it, mean share of the n items used) of
    certification's fixed-n Tango test on n items with the predictive-power stop at each look
    (the same simulated data for both, so the difference is the stop's alone)."""
    z_alpha = float(norm.ppf(1 - CERT_ALPHA))
    chunk = look_size(n)
    wins, losses = np.zeros(reps), np.zeros(reps)
    stopped_at = np.full(reps, float(n))
    for start in range(0, n, chunk):
        size = min(n, start + chunk)
        add = rng.multinomial(size - start, cells(d, delta), size=reps)
        wins += add[:, 0]
        losses += add[:, 1]
        if size < n and size >= 20:
            mean = (wins - losses) / size
            sd = np.sqrt(np.maximum((wins + losses) / size - mean**2, 0.0) * size / (size - 1))
            chance = predictive_power_of(mean, sd, size, n, margin=CERT_MARGIN, alpha=CERT_ALPHA)
            stopped_at = np.where((stopped_at == n) & (chance < HOPELESS), size, stopped_at)
    passes = tango_statistic(wins, losses, n, -CERT_MARGIN) > z_alpha
    return float(passes.mean()), float((passes & (stopped_at == n)).mean()), float(stopped_at.mean() / n)


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
    cert_rows = []
    for d in CERT_DISCORDANCES:
        for delta in CERT_DELTAS:
            planned = max(delta, -CERT_MARGIN / 2)  # certify.anticipated_delta
            n = min(CERT_CAP, items_needed(margin=CERT_MARGIN, discordance=max(d, abs(planned) + 0.01),
                                           alpha=CERT_ALPHA, power=POWER, true_delta=planned))
            without, with_stop, used = certification_run(rng, d, delta, n, CERT_REPS)
            cert_rows.append({"discordance": d, "true_delta": delta, "n": n, "pass_rate": round(without, 4),
                              "pass_rate_with_stop": round(with_stop, 4), "items_used": round(used, 4)})
    cert_mc = 2 * math.sqrt(POWER * (1 - POWER) / CERT_REPS)
    power_lost = max(r["pass_rate"] - r["pass_rate_with_stop"] for r in cert_rows if r["true_delta"] == 0)
    hopeless_used = max(r["items_used"] for r in cert_rows if r["true_delta"] <= -0.027)
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
        "certification_stop": {
            "rule": f"stop when the predictive power of finishing is below {HOPELESS} (certify.HOPELESS); "
                    f"margin {CERT_MARGIN}, alpha {CERT_ALPHA}, {CERT_REPS} reps per row",
            "power_lost_at_zero": round(power_lost, 4),
            "items_used_by_candidates_at_or_beyond_0.027_behind": hopeless_used,
            "rows": cert_rows,
        },
        "checks": {
            "certification_stop_costs_at_most_2_points_of_power": power_lost <= 0.02 + cert_mc,
            "certification_stop_never_raises_false_accepts": all(
                r["pass_rate_with_stop"] <= r["pass_rate"] for r in cert_rows),
            "certification_stop_saves_a_third_on_hopeless_candidates": hopeless_used <= 2 / 3,
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
