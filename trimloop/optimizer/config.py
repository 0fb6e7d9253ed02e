"""A run's options: per-prompt settings (`[prompts.NAME]` in trimloop.toml) under run overrides."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from trimloop.core.catalog import BUNDLED, LOCAL_PREFIX
from trimloop.core.defaults import DEFAULT_ALPHA, DEFAULT_MARGIN, DEFAULT_MIN_EFFECT
from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings
from trimloop.evals.datasets import DEFAULT_EVALUATOR_KEYS
from trimloop.evals.evaluators import build_evaluators
from trimloop.evals.health import parse_health
from trimloop.evals.watch import WatchPolicy

OPTIONS_HINT = "the run options are listed in the README's Optimizer options section and docs/api.md"


# Upper bounds on a run's budgets: far past any real run, low enough that spend arithmetic and the
# store's integer columns cannot overflow (an Infinity budget once started a run that then died).
MAX_BUDGET_DOLLARS = 100_000.0
MAX_BUDGET_CALLS = 10_000_000


class RunConfig(BaseModel):
    model_config = {"extra": "forbid", "allow_inf_nan": False}

    evaluators: Any = None  # default: matches_baseline (labels when the outputs look like labels)
    margin: float = Field(default=DEFAULT_MARGIN, ge=0, lt=1)
    margins: dict[str, float] = Field(default_factory=dict, description="per-evaluator margins")
    samples: int | None = Field(default=None, ge=1, description="samples per item at temperature > 0")
    alpha: float = Field(default=DEFAULT_ALPHA, gt=0, lt=0.5)
    power: float = Field(default=0.8, gt=0.5, lt=1)
    models: list[str] | None = None  # candidate models; default: bundled + configured with keys
    proposer_model: str | None = Field(
        default=None, description="model that proposes instruction rewrites through DSPy (off when unset)")
    dataset_size: int = Field(default=600, ge=10)
    holdout_fraction: float = Field(default=0.6, gt=0, lt=1)
    rungs: tuple[int, ...] = (16, 48, 144)
    eta: int = Field(default=3, ge=2)
    max_candidates: int = Field(default=12, ge=1)
    rewrite_share: float = Field(default=0.25, ge=0, lt=1, description="of the search's calls, the most the "
                                 "rewrite move's GEPA may spend (0: no rewrites)")
    certify_top: int = Field(default=2, ge=1)
    concurrency: int = Field(default=4, ge=1)
    seed: int = 0
    budget_calls: int | None = Field(default=2000, ge=1, le=MAX_BUDGET_CALLS)
    search_budget_calls: int | None = Field(default=None, ge=1, le=MAX_BUDGET_CALLS,
                                            description="the search's share of budget_calls")
    budget_dollars: float | None = Field(default=None, gt=0, le=MAX_BUDGET_DOLLARS)
    window_days: int = Field(default=28, ge=1)
    expected_from: str | None = Field(
        default=None, description="feedback name whose value is the gold answer (e.g. 'expected')"
    )
    force: bool = Field(default=False, description="search even when the baseline is broken (evals.health); "
                        "otherwise such a run ends baseline_unhealthy without searching")
    repair: bool = Field(default=False, description="search for a repair (better quality, at any cost) instead of "
                         "cheaper variants: the repair moves, certified by the superiority test")
    min_effect: float = Field(default=DEFAULT_MIN_EFFECT, gt=0, lt=1,
                              description="a repair must beat the baseline by at least this on every evaluator")
    min_effects: dict[str, float] = Field(default_factory=dict, description="per-evaluator min effects of a repair")
    health: dict[str, Any] | None = Field(default=None, description="prompt health options (evals.health.HealthConfig)")
    watch: dict[str, Any] | None = Field(
        default=None, description="the post-deploy watch's policy (evals.watch.WatchPolicy); not used by a run")
    objective: Literal["cost", "latency"] = Field(
        default="cost", description="what the run cuts: cost per call, or latency (see `latency`)")
    latency: Literal["p50", "p95", "ttft_p50", "ttft_p95"] = Field(
        default="p50", description="the latency statistic the objective or max_latency_s reads (ttft: time to "
        "first token, on streamed calls: params stream = true)")
    max_latency_s: float | None = Field(
        default=None, gt=0, description="with objective cost: the candidate's fresh latency must stay under this")
    max_cost_increase: float | None = Field(
        default=None, ge=0, description="with objective latency: how much dearer a candidate may be (0.1 = +10 %)")
    min_latency_effect: float = Field(
        default=0.05, ge=0, lt=1, description="a latency win must be at least this share of the baseline's latency")
    control: Literal["auto", "always", "never"] = Field(
        default="auto", description="re-run the baseline beside each candidate (auto: for latency, and for "
        "agreement-based evaluators on providers not known to be deterministic)")
    dataset: int | None = Field(
        default=None, ge=1, description="id of an imported gold set of this prompt to optimize on instead of a "
        "sample of its logs; items without a baseline output are run once through the baseline (paid calls)")

    @field_validator("rungs")
    @classmethod
    def _rungs(cls, rungs: tuple[int, ...]) -> tuple[int, ...]:
        if not rungs or list(rungs) != sorted(set(rungs)) or rungs[0] < 2:
            raise ValueError(f"rungs must be increasing item counts ≥ 2, e.g. [16, 48, 144]; got {list(rungs)}")
        return rungs


class RunOptionError(ConfigError):
    """One bad run option: `field` is its dotted key (`margin`, `models.1`, `evaluators.rouge`),
    `from_run` says whether the run's own options set it (else `[prompts.NAME]` in trimloop.toml)."""

    def __init__(self, message: str, *, field: str, from_run: bool, prompt_name: str, hint: str | None):
        where = f"the run's config.{field}" if from_run else f"[prompts.{prompt_name}].{field}"
        super().__init__(message, where=where, hint=hint)
        self.field, self.from_run = field, from_run


def run_config(settings: Settings, prompt_name: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults < `[prompts.NAME]` < the run's own overrides; a ConfigError names bad keys."""
    values = dict(settings.prompts.get(prompt_name, {})) | dict(overrides or {})
    try:
        return RunConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(
            f"invalid optimization options: {problems}",
            where=f"[prompts.{prompt_name}] or the run's config",
            hint="see the README's Optimizer section for the keys",
        ) from None


def check_run_config(settings: Settings, prompt_name: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """`run_config`, plus what a run would otherwise fail on only once it starts: evaluators that
    exist with valid options, margins that name them, and candidate models that can exist.

    Raises RunOptionError naming the first bad key (every pydantic problem is in the message)."""
    overrides = dict(overrides or {})
    values = dict(settings.prompts.get(prompt_name, {})) | overrides

    def error(message: str, field: str, hint: str | None = OPTIONS_HINT) -> RunOptionError:
        top = field.split(".", 1)[0].split("[", 1)[0]
        return RunOptionError(message, field=field, from_run=top in overrides, prompt_name=prompt_name, hint=hint)

    try:
        config = RunConfig(**values)
    except ValidationError as exc:
        problems = exc.errors()
        first = ".".join(map(str, problems[0]["loc"])) or "config"
        message = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {_plain(e['msg'])}" for e in problems)
        unknown = [str(e["loc"][0]) for e in problems if e["type"] == "extra_forbidden"]
        hint = (f"known options: {', '.join(RunConfig.model_fields)}" if unknown else OPTIONS_HINT)
        raise error(message, first, hint) from None
    try:
        parse_health(config.health, where="health")
    except ConfigError as exc:
        raise error(exc.message, exc.where or "health", exc.hint) from None
    keys = set(DEFAULT_EVALUATOR_KEYS)
    if config.evaluators is not None:
        try:
            keys = {n.key for n in build_evaluators(config.evaluators, where="evaluators")}
        except ConfigError as exc:
            raise error(exc.message, exc.where or "evaluators", exc.hint) from None
    for name in sorted(set(config.margins) - keys):
        raise error(f"margins names evaluator {name!r}, which this run does not use", f"margins.{name}",
                    f"evaluators of this run: {', '.join(sorted(keys))}"
                    + ("" if config.evaluators is not None else " (the defaults; set evaluators to use others)"))
    for name, value in config.margins.items():
        if not 0 <= value < 1:
            raise error(f"margin of {name!r} must be in [0, 1) on the 0–1 score scale, got {value:g}",
                        f"margins.{name}", "e.g. margins = {" + f"{name} = 0.05" + "}")
    for name in sorted(set(config.min_effects) - keys):
        raise error(f"min_effects names evaluator {name!r}, which this run does not use", f"min_effects.{name}",
                    f"evaluators of this run: {', '.join(sorted(keys))}")
    for name, value in config.min_effects.items():
        if not 0 < value < 1:
            raise error(f"min effect of {name!r} must be in (0, 1) on the 0–1 score scale, got {value:g}",
                        f"min_effects.{name}", "e.g. min_effects = {" + f"{name} = 0.1" + "}")
    for index, model_id in enumerate(config.models or []):
        _check_model(settings, model_id, lambda m, h, i=index: error(m, f"models.{i}", h))
    if config.proposer_model is not None:
        _check_model(settings, config.proposer_model, lambda m, h: error(m, "proposer_model", h))
    if config.watch is not None:
        try:
            WatchPolicy(**config.watch)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise error(f"watch.{'.'.join(map(str, first['loc']))}: {_plain(first['msg'])}",
                        f"watch.{'.'.join(map(str, first['loc']))}",
                        f"watch takes: {', '.join(WatchPolicy.model_fields)}") from None
    return config


def _check_model(settings: Settings, model_id: str, error: Any) -> None:
    """What can be known without calling or pricing the model: a name, and a local one that exists."""
    if not model_id.strip():
        raise error("empty model id", "name a model, e.g. local/smollm2-135m")
    if model_id.startswith(LOCAL_PREFIX) and model_id not in BUNDLED and model_id not in settings.models:
        raise error(f"unknown local model {model_id!r}",
                    f"bundled models are {', '.join(BUNDLED)}; or add [models.\"{model_id}\"] with an "
                    "api_base to trimloop.toml")


def _plain(message: str) -> str:
    return message.removeprefix("Value error, ")


def default_candidate_models(settings: Settings) -> list[str]:
    """The bundled models, plus every configured model whose key is present (or needs none)."""
    models = list(BUNDLED)
    for model_id, config in settings.models.items():
        if model_id in models:
            continue
        if config.api_key_env and not os.environ.get(config.api_key_env):
            continue
        models.append(model_id)
    return models
