"""Per-prompt evaluation options from settings."""

from __future__ import annotations

import pytest

from trimloop.core.errors import ConfigError
from trimloop.core.settings import Settings
from trimloop.evals.config import eval_config


def settings(**prompt) -> Settings:
    return Settings(prompts={"triage": prompt})


def test_defaults_to_matching_the_baseline() -> None:
    config = eval_config(Settings(), "unknown-prompt")
    assert [n.key for n in config.evaluators] == ["matches_baseline"]
    assert (config.margin, config.alpha, config.samples) == (0.02, 0.05, None)


def test_reads_evaluators_margins_and_samples() -> None:
    config = eval_config(settings(evaluators={"label": {"labels": ["a", "b"]}, "rouge": {}},
                                  margin=0.03, margins={"rouge": 0.05}, samples=2, budget_calls=10), "triage")
    assert [n.key for n in config.evaluators] == ["label", "rouge"]
    assert config.margin == 0.03 and config.margins == {"rouge": 0.05} and config.samples == 2


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"margin": 2}, "trimloop.toml [prompts.triage].margin"),
        ({"alpha": "0.05"}, "trimloop.toml [prompts.triage].alpha"),
        ({"margins": {"bleu": 0.1}}, "trimloop.toml [prompts.triage].margins"),
        ({"samples": 0}, "trimloop.toml [prompts.triage].samples"),
        ({"evaluators": {"labl": {}}}, "trimloop.toml [prompts.triage].evaluators.labl"),
    ],
)
def test_bad_options_name_the_key(options, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        eval_config(settings(**options), "triage")
    assert info.value.where == where and info.value.hint
