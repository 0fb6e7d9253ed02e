"""ROUGE, BLEU and chrF scaled to [0, 1], including unicode and empty outputs."""

from __future__ import annotations

import pytest

from trimloop.evals.evaluators import EvalContext, build_evaluators, normalise


def score(config, output, expected):
    (named,) = build_evaluators(config)
    return normalise(named.evaluator.evaluate(EvalContext(output=output, expected=expected)), evaluator="t").value


REF = "the cat sat on the mat"


@pytest.mark.parametrize("name", ["rouge", "bleu", "chrf"])
def test_identical_is_one_and_empty_is_zero(name: str) -> None:
    assert score(name, REF, REF) == pytest.approx(1.0)
    assert score(name, "", REF) == 0.0


@pytest.mark.parametrize("name", ["rouge", "bleu", "chrf"])
def test_closer_outputs_score_higher(name: str) -> None:
    near = score(name, "the cat sat on a mat", REF)
    far = score(name, "dogs bark loudly at night", REF)
    assert 0.0 <= far < near < 1.0


def test_rouge_counts_non_ascii_words() -> None:
    # rouge-score's default tokenizer would score this 0: it drops every non-ASCII character.
    assert score("rouge", "東京 は 大きい", "東京 は 大きい") == pytest.approx(1.0)
    assert score({"rouge": "rouge1"}, "café crème", "café noir") == pytest.approx(0.5)


def test_rouge_against_baseline_and_on_big_output() -> None:
    (named,) = build_evaluators({"rouge": {"against": "baseline", "type": "rouge1"}})
    result = named.evaluator.evaluate(EvalContext(output="a b c", baseline_output="a b d"))
    assert result.value == pytest.approx(2 / 3)
    big = "word " * 20_000
    assert 0.0 < score({"rouge": "rouge1"}, big, REF + " word") < 0.01
