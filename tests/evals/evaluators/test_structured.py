"""JSON evaluators: fenced JSON, JSON followed by prose, broken JSON, schemas, field F1."""

from __future__ import annotations

import json

import pytest

from trimloop.core.errors import ConfigError
from trimloop.evals.evaluators import EvalContext, build_evaluators
from trimloop.evals.evaluators.structured import field_scores, parse_json


def run(config, output, expected=None):
    (named,) = build_evaluators(config)
    return named.evaluator.evaluate(EvalContext(output=output, expected=expected))


def test_json_valid_lenient_and_strict() -> None:
    prose = '{"a": 1}\n\nI hope this helps!'
    assert run("json_valid", prose).value is True
    assert run({"json_valid": {"strict": True}}, prose).value is False
    assert run("json_valid", 'Sure:\n```json\n{"a": [1, 2]}\n```').value is True
    assert run("json_valid", "").value is False
    assert run("json_valid", '{"a": 1').value is False
    assert run({"json_valid": {"type": "object"}}, "[1, 2]").value is False
    assert run("json_valid", '{"名前": "東京"}').value is True


def test_json_valid_on_a_100kb_output() -> None:
    big = json.dumps({"rows": ["x" * 100] * 1000})
    assert len(big) > 100_000
    assert run({"json_valid": {"strict": True}}, big).value is True
    assert run("json_valid", big[:-1]).value is True  # inner array still parses leniently
    assert run({"json_valid": {"strict": True}}, big[:-1]).value is False


def test_parse_json_does_not_crash_on_deep_nesting() -> None:
    value, problem = parse_json("[" * 100_000)
    assert problem is not None


def test_json_schema_validates_and_explains() -> None:
    schema = {"type": "object", "required": ["name"], "properties": {"age": {"type": "integer"}}}
    assert run({"json_schema": schema and {"schema": schema}}, '{"name": "Zoë", "age": 3}').value is True
    bad = run({"json_schema": {"schema": schema}}, '{"name": "x", "age": "three"} trailing text')
    assert bad.value is False and bad.reason.startswith("age:")
    assert run({"json_schema": {"schema": schema}}, "not json").value is False


def test_json_schema_refuses_an_invalid_schema() -> None:
    with pytest.raises(ConfigError, match="invalid JSON Schema") as info:
        build_evaluators({"json_schema": {"schema": {"type": "banana"}}})
    assert info.value.where == "evaluators.json_schema.schema"


def test_field_scores_precision_recall_f1() -> None:
    matches, p, r, f1 = field_scores(
        {"name": "Aromi", "food": "Chinese", "area": "city centre"},
        {"name": "aromi", "food": "Italian", "near": "Café Rouge"},
        None,
    )
    assert matches == {"area": False, "food": False, "name": True, "near": False}
    assert (p, r) == (1 / 3, 1 / 3)
    assert f1 == pytest.approx(1 / 3)


def test_json_fields_scores_f1_and_names_the_wrong_fields() -> None:
    expected = '{"name": "The Eagle", "eatType": "coffee shop", "priceRange": null}'
    perfect = run("json_fields", 'Here: {"name": "the eagle", "eatType": "Coffee Shop"} done', expected)
    assert perfect.value == 1.0
    partial = run({"json_fields": ["name", "eatType"]}, '{"name": "The Eagle", "eatType": "pub"}', expected)
    assert partial.value == pytest.approx(0.5) and "eatType" in partial.reason
    assert run("json_fields", "", expected).value == 0.0
    assert run("json_fields", '{"name": "x"}', "no json").value is False
