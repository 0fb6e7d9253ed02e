"""Per-prompt evaluation options from `settings.prompts[name]`, validated with clear errors.

    [prompts.support-triage]
    evaluators = {label = {labels = ["Billing", "Claims"]}}
    margin = 0.02            # non-inferiority margin on a 0–1 score
    alpha = 0.05
    margins = {rouge = 0.05} # per-evaluator overrides
    samples = 3              # repeated samples per item when temperature > 0

Keys this package does not own (budgets, schedules) are left to the optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trimloop.core.defaults import DEFAULT_ALPHA, DEFAULT_MARGIN
from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings
from trimloop.evals.datasets import default_evaluators
from trimloop.evals.evaluators import NamedEvaluator, build_evaluators

@dataclass(frozen=True)
class EvalConfig:
    evaluators: list[NamedEvaluator]
    margin: float = DEFAULT_MARGIN
    alpha: float = DEFAULT_ALPHA
    margins: dict[str, float] = field(default_factory=dict)
    samples: int | None = None


def _number(options: dict[str, Any], key: str, default: float, low: float, high: float, where: str) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{key} must be a number in [{low}, {high}], got {value!r}",
                          where=f"{where}.{key}", hint=f"e.g. {key} = {default}")
    return float(value)


def eval_config(settings: Settings, prompt_name: str) -> EvalConfig:
    """The evaluation options of one prompt (default: agreement with the baseline's output)."""
    options = settings.prompts.get(prompt_name, {})
    where = f"trimloop.toml [prompts.{prompt_name}]"
    evaluators = build_evaluators(options.get("evaluators", default_evaluators()), where=f"{where}.evaluators")
    margin = _number(options, "margin", DEFAULT_MARGIN, 0.0, 1.0, where)
    alpha = _number(options, "alpha", DEFAULT_ALPHA, 1e-6, 0.49, where)
    margins_raw = options.get("margins", {})
    if not isinstance(margins_raw, dict):
        raise ConfigError("margins must be a table of evaluator = margin", where=f"{where}.margins",
                          hint="e.g. margins = {rouge = 0.05}")
    keys = {n.key for n in evaluators}
    unknown = sorted(set(margins_raw) - keys)
    if unknown:
        raise ConfigError(f"margins name evaluator(s) not configured: {', '.join(unknown)}",
                          where=f"{where}.margins", hint=f"configured evaluators: {', '.join(sorted(keys))}")
    margins = {k: _number(margins_raw, k, margin, 0.0, 1.0, f"{where}.margins") for k in margins_raw}
    samples = options.get("samples")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise ConfigError(f"samples must be a whole number ≥ 1, got {samples!r}", where=f"{where}.samples",
                          hint="e.g. samples = 3")
    return EvalConfig(evaluators=evaluators, margin=margin, alpha=alpha, margins=margins, samples=samples)
