"""The post-deploy watch's statistics: anytime-valid confidence sequences for live signals.

The watch is checked after every sync, so a fixed-n test would inflate false alarms with every
look. It uses confidence sequences instead (bounds that hold at every n at once):

- each signal (an evaluator's score against gold, a feedback value) lies in [0, 1];
- the bound for one stream is the predictable plug-in empirical-Bernstein confidence sequence
  (PrPl-EB) of Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting",
  JRSS-B 86(1), 2024, Theorem 2 (eqs. 13–15), with its running intersection; it is valid for any
  bounded stream, not only asymptotically, and narrows with the stream's own variance;
- unpaired (the new version's live signal against the old one's): a one-sided bound per arm at
  α/2 each, combined as U_new − L_old (upper) and L_new − U_old (lower), so together at α;
- paired (shadow scoring: the old version re-run on the same live inputs): the per-item
  differences d ∈ [−1, 1] mapped to (d + 1) / 2 ∈ [0, 1], one bound at α.

Libraries were checked first: `confseq` 0.0.11 ships only a source archive that compiles a C++
extension (CMake, Boost) at install time, `savvi` 0.3.1 has linear-regression and multinomial
tests but no bounded-mean sequence, and `expectation` needs Python ≥ 3.12; hence these lines of
numpy, checked against the paper's guarantee by bench/watch.py (false alarms over 1,000 streams).

Verdicts per signal: `regressed` when the whole interval for new − old lies below −margin (worse
than the old version by more than the margin the team certified at), `holding` when it lies above
−margin, else `inconclusive`. Across k signals, α is split (Bonferroni) so that the chance of any
false `regressed` stays ≤ α.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings
from trimloop.core.status import WatchVerdict
from trimloop.evals.datasets import _expected
from trimloop.evals.evaluators import EvalContext, normalise
from trimloop.evals.evaluators.base import MissingReference

MIN_ITEMS = 30  # fewer items per arm than this: inconclusive, whatever the bound says
LAMBDA_CAP = 0.75  # c in the paper (it suggests 1/2 or 3/4): bets at most 3/4 of the wealth


class WatchPolicy(BaseModel):
    """`[prompts.NAME].watch` in trimloop.toml: what the watch does with its verdicts.

        [prompts.support-triage]
        watch = {on_regression = "rollback", on_holding = "promote", shadow_per_day = 200}
    """

    model_config = {"extra": "forbid", "allow_inf_nan": False}

    enabled: bool = True
    on_regression: Literal["alert", "rollback"] = Field(
        default="alert", description="alert: a `watch.regressed` webhook; rollback: also move production back")
    on_holding: Literal["promote"] | None = Field(
        default=None, description="promote: a staging version that holds is promoted to production")
    shadow_per_day: int = Field(default=0, ge=0, le=100_000,
                                description="live inputs a day also run through the old version (paid calls)")
    min_items: int = Field(default=MIN_ITEMS, ge=5, description="items per side before any verdict")
    pre_deploy_days: int = Field(default=28, ge=1, description="the old version's window before the deploy")
    max_items: int = Field(default=20_000, ge=100, description="items per side read, oldest first")
    alpha: float | None = Field(default=None, gt=0, lt=0.5, description="default: the prompt's alpha")
    margin: float | None = Field(default=None, ge=0, lt=1, description="default: the prompt's margin")


def watch_policy(settings: Settings, prompt_name: str) -> WatchPolicy:
    """The prompt's watch policy; a ConfigError naming the key when it is wrong."""
    raw: Any = settings.prompts.get(prompt_name, {}).get("watch", {})
    where = f"trimloop.toml [prompts.{prompt_name}].watch"
    if not isinstance(raw, dict):
        raise ConfigError(f"watch must be a table, got {raw!r}", where=where,
                          hint='e.g. watch = {on_regression = "rollback"}')
    try:
        return WatchPolicy(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'watch'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid watch policy: {problems}", where=where,
                          hint=f"known keys: {', '.join(WatchPolicy.model_fields)}; see the README's Watch section"
                          ) from None


def betting_bounds(x: Sequence[float] | np.ndarray, alpha: float, *, fixed: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One-sided (1 − alpha) lower and upper PrPl-EB confidence sequences for the mean of x ∈ [0, 1],
    after each observation, running-intersected (lower non-decreasing, upper non-increasing).

    `fixed`: x is a sample fixed before any look (the old version's pre-deploy window), so only the
    bound at its full length is used, and the bets are tuned for that length (the paper's PrPl-EB
    confidence interval, λ_t = sqrt(2 log(1/α) / (n σ̂²_{t−1})) ∧ c): narrower than the sequence."""
    x = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
    n = len(x)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    t = np.arange(1, n + 1, dtype=float)
    mu = (0.5 + np.cumsum(x)) / (t + 1)  # mu_hat_t
    sq = (x - mu) ** 2
    var = (0.25 + np.cumsum(sq)) / (t + 1)  # sigma_hat^2_t
    mu_prev = np.concatenate(([0.5], mu[:-1]))
    var_prev = np.concatenate(([0.25], var[:-1]))
    log_term = math.log(1.0 / alpha)
    spread = np.full(n, float(n)) if fixed else t * np.log1p(t)
    lam = np.minimum(np.sqrt(2.0 * log_term / (var_prev * spread)), LAMBDA_CAP)
    v = 4.0 * (x - mu_prev) ** 2
    psi = (-np.log1p(-lam) - lam) / 4.0
    lam_sum = np.cumsum(lam)
    centre = np.cumsum(lam * x) / lam_sum
    width = (log_term + np.cumsum(v * psi)) / lam_sum
    lower = np.maximum.accumulate(np.clip(centre - width, 0.0, 1.0))
    upper = np.minimum.accumulate(np.clip(centre + width, 0.0, 1.0))
    return lower, upper


@dataclass(frozen=True)
class SignalCheck:
    """One signal's comparison: means, counts, the anytime-valid interval for new − old, verdict."""

    signal: str
    mode: str  # paired | unpaired
    n_new: int
    n_old: int
    mean_new: float | None
    mean_old: float | None
    low: float | None  # bound on new − old, valid at every look
    high: float | None
    margin: float
    verdict: WatchVerdict

    def as_dict(self) -> dict[str, object]:
        return {k: (v.value if isinstance(v, WatchVerdict) else v) for k, v in self.__dict__.items()}


def _verdict(low: float, high: float, margin: float, enough: bool) -> WatchVerdict:
    if not enough:
        return WatchVerdict.inconclusive
    if high < -margin:
        return WatchVerdict.regressed
    if low > -margin:
        return WatchVerdict.holding
    return WatchVerdict.inconclusive


def unpaired_check(signal: str, new: Sequence[float], old: Sequence[float], *, alpha: float, margin: float,
                   min_items: int = MIN_ITEMS, old_fixed: bool = False) -> SignalCheck:
    """New version's live values against the old one's: concurrent (both grow, both sequences), or its
    pre-deploy window (`old_fixed`: a sample fixed before the first look, bounded once at its size)."""
    if not len(new) or not len(old):
        return SignalCheck(signal, "unpaired", len(new), len(old), _mean(new), _mean(old), None, None, margin,
                           WatchVerdict.inconclusive)
    new_low, new_high = betting_bounds(new, alpha / 2)
    old_low, old_high = betting_bounds(old, alpha / 2, fixed=old_fixed)
    low, high = float(new_low[-1] - old_high[-1]), float(new_high[-1] - old_low[-1])
    enough = min(len(new), len(old)) >= min_items
    return SignalCheck(signal, "unpaired", len(new), len(old), _mean(new), _mean(old), low, high, margin,
                       _verdict(low, high, margin, enough))


def paired_check(signal: str, new: Sequence[float], old: Sequence[float], *, alpha: float, margin: float,
                 min_items: int = MIN_ITEMS) -> SignalCheck:
    """Shadow scoring: both versions on the same live inputs, in the order they were scored."""
    if len(new) != len(old):
        raise ValueError(f"paired values need equal lengths, got {len(new)} and {len(old)}")
    if not len(new):
        return SignalCheck(signal, "paired", 0, 0, None, None, None, None, margin, WatchVerdict.inconclusive)
    d = (np.asarray(new, float) - np.asarray(old, float) + 1.0) / 2.0
    lower, upper = betting_bounds(d, alpha)
    low, high = float(2 * lower[-1] - 1), float(2 * upper[-1] - 1)
    return SignalCheck(signal, "paired", len(new), len(old), _mean(new), _mean(old), low, high, margin,
                       _verdict(low, high, margin, len(new) >= min_items))


def overall(checks: Sequence[SignalCheck]) -> WatchVerdict:
    """Regressed if any signal regressed; holding if every signal holds; else inconclusive."""
    if any(c.verdict == WatchVerdict.regressed for c in checks):
        return WatchVerdict.regressed
    if checks and all(c.verdict == WatchVerdict.holding for c in checks):
        return WatchVerdict.holding
    return WatchVerdict.inconclusive


def per_signal_alpha(alpha: float, signals: int) -> float:
    """Bonferroni: k signals each at α/k keep the chance of any false alarm ≤ α."""
    return alpha / max(1, signals)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def gold(feedback: list[dict[str, Any]] | None, name: str | None) -> str | None:
    """The gold answer a log carries as feedback named `name` (a reviewer's label), if any."""
    return _expected(feedback, name)


def log_signals(*, output: str | None, inputs: dict[str, Any], feedback: list[dict[str, Any]] | None,
                evaluators: Sequence[Any], expected_from: str | None) -> dict[str, float]:
    """The live signals of one logged call, each in [0, 1]: every synchronous evaluator that can score
    it (against the gold answer in its feedback; one that needs a reference the log lacks is left out),
    and every numeric or boolean feedback value by name (`feedback:thumbs`), except the gold itself."""
    out: dict[str, float] = {}
    if output is not None:
        ctx = EvalContext(output=output, inputs=inputs or {}, expected=gold(feedback, expected_from))
        for named in evaluators:
            if named.evaluator.is_async:  # judges call a model: only through shadow scoring's gateway
                continue
            try:
                out[named.key] = normalise(named.evaluator.evaluate(ctx), evaluator=named.key).value
            except MissingReference:
                continue
    for entry in feedback or []:
        if not isinstance(entry, dict) or entry.get("name") in (None, expected_from):
            continue
        value = entry.get("value")
        if isinstance(value, bool):
            out[f"feedback:{entry['name']}"] = 1.0 if value else 0.0
        elif isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0:
            out[f"feedback:{entry['name']}"] = float(value)
    return out
