"""The evaluator registry: names, config shapes, errors, and plugin registration."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trimloop.core.errors import ConfigError
from trimloop.evals.evaluators import (
    BUILTIN_EVALUATORS, EvalContext, Evaluator, build_evaluators, normalise, register, registry,
)

ALL = {"exact", "label", "contains", "regex", "json_valid", "json_schema", "json_fields", "numeric",
       "rouge", "bleu", "chrf", "length", "matches_baseline", "llm_judge", "pairwise_judge"}


def test_every_built_in_is_registered() -> None:
    assert {cls.name for cls in BUILTIN_EVALUATORS} == ALL
    assert ALL <= set(registry())


def test_table_and_list_configs_build_the_same_keys() -> None:
    table = build_evaluators({"exact": {}, "contains": "refund"})
    listed = build_evaluators(["exact", {"contains": "refund"}])
    assert [n.key for n in table] == [n.key for n in listed] == ["exact", "contains"]


@pytest.mark.parametrize(
    ("config", "where", "message"),
    [
        ({"exakt": {}}, "evaluators.exakt", "unknown evaluator 'exakt'"),
        ({"label": {"labels": ["a", "b"], "case": 1}}, "evaluators.label", "unknown option(s) case"),
        ({"numeric": {"abs_tol": "tight"}}, "evaluators.numeric.abs_tol", "is invalid"),
        ({"exact": "yes"}, "evaluators.exact", "takes a table of options"),
        ({"llm_judge": {"rubric": "r"}}, "evaluators.llm_judge", "needs option(s) model"),
        ([42], "evaluators[0]", "neither a name"),
        (["exact", "exact"], "evaluators.exact", "configured twice"),
        ({}, "evaluators", "no evaluators configured"),
    ],
)
def test_bad_configs_say_what_and_where(config, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_evaluators(config)
    assert info.value.where == where
    assert message in info.value.message
    assert info.value.hint


def test_normalise_refuses_out_of_range_scores() -> None:
    assert normalise(True, evaluator="x").value == 1.0
    with pytest.raises(TypeError, match="float in \\[0, 1\\]"):
        normalise(1.5, evaluator="x")
    with pytest.raises(TypeError):
        normalise(float("nan"), evaluator="x")


def test_register_a_plugin_evaluator() -> None:
    @dataclass
    class Shouty(Evaluator):
        name = "shouty_test"
        min_ratio: float = 0.5

        def evaluate(self, ctx: EvalContext) -> float:
            letters = [c for c in ctx.output if c.isalpha()]
            return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0

    found: dict = {}
    register(Shouty, into=found)
    assert found == {"shouty_test": Shouty}
    with pytest.raises(ConfigError, match="already taken"):
        register(type("Other", (Shouty,), {}), into=found)
    with pytest.raises(ConfigError, match="not an Evaluator"):
        register(int, into=found)  # type: ignore[arg-type]
