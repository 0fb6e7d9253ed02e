"""A run's options: per-prompt settings (`[prompts.NAME]` in trimloop.toml) under run overrides."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from trimloop.core.catalog import BUNDLED
from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings


class RunConfig(BaseModel):
    model_config = {"extra": "forbid"}

    evaluators: Any = None  # default: matches_baseline (labels when the outputs look like labels)
    margin: float = Field(default=0.02, ge=0, lt=1)
    margins: dict[str, float] = Field(default_factory=dict, description="per-evaluator margins")
    samples: int | None = Field(default=None, ge=1, description="samples per item at temperature > 0")
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    power: float = Field(default=0.8, gt=0.5, lt=1)
    models: list[str] | None = None  # candidate models; default: bundled + configured with keys
    proposer_model: str | None = Field(
        default=None, description="model that proposes instruction rewrites through DSPy (off when unset)")
    dataset_size: int = Field(default=600, ge=10)
    holdout_fraction: float = Field(default=0.6, gt=0, lt=1)
    rungs: tuple[int, ...] = (16, 48, 144)
    eta: int = Field(default=3, ge=2)
    max_candidates: int = Field(default=12, ge=1)
    certify_top: int = Field(default=2, ge=1)
    concurrency: int = Field(default=4, ge=1)
    seed: int = 0
    budget_calls: int | None = Field(default=2000, ge=1)
    search_budget_calls: int | None = Field(default=None, ge=1, description="the search's share of budget_calls")
    budget_dollars: float | None = Field(default=None, gt=0)
    window_days: int = Field(default=28, ge=1)
    expected_from: str | None = Field(
        default=None, description="feedback name whose value is the gold answer (e.g. 'expected')"
    )

    @model_validator(mode="after")
    def _rungs(self) -> "RunConfig":
        if not self.rungs or list(self.rungs) != sorted(set(self.rungs)) or self.rungs[0] < 2:
            raise ValueError(f"rungs must be increasing item counts ≥ 2, got {list(self.rungs)}")
        return self


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
