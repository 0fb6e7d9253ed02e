"""Text evaluators on realistic and hostile outputs."""

from __future__ import annotations

import pytest

from trimloop.core.errors import ConfigError
from trimloop.evals.evaluators import EvalContext, MissingReference, build_evaluators, find_labels, last_number

BIG = "lorem ipsum dolor " * 6000  # ~100 KB


def run(config, output, expected=None, baseline=None):
    (named,) = build_evaluators(config)
    return named.evaluator.evaluate(EvalContext(output=output, expected=expected, baseline_output=baseline))


LABELS = {"label": {"labels": ["positive", "negative"]}}


@pytest.mark.parametrize(
    ("output", "ok", "label"),
    [
        ("positive", True, "positive"),
        ("The sentiment is Positive.", True, "positive"),
        ("**POSITIVE**\n", True, "positive"),
        ("positive. Definitely positive!", True, "positive"),  # a label said twice
        ("positive or negative, hard to say", False, None),  # ambiguous
        ("", False, None),
        ("positively glowing", False, None),  # whole words only
        ("négative", False, None),
        (BIG + " positive", True, "positive"),
    ],
)
def test_label_reads_the_class_from_free_text(output: str, ok: bool, label: str | None) -> None:
    result = run(LABELS, output, expected="positive")
    assert result.value is ok
    assert result.label == label


def test_label_first_mode_takes_the_first_mention() -> None:
    config = {"label": {"labels": ["positive", "negative"], "mode": "first"}}
    assert run(config, "negative\n\nReview: great. Sentiment: positive", expected="negative").value is True


def test_label_prefers_the_longer_label_it_contains() -> None:
    labels = ["Billing Disputes", "Disputes", "Claims Disputes"]
    assert find_labels("This is a billing dispute... Billing Disputes.", labels) == (
        "Billing Disputes", ["Billing Disputes"])
    assert find_labels("Claims Disputes, not Billing Disputes", labels)[0] is None


def test_label_needs_an_expected_answer() -> None:
    with pytest.raises(MissingReference, match="expected output") as info:
        run(LABELS, "positive")
    assert "matches_baseline" in (info.value.hint or "")


def test_exact_ignores_case_and_whitespace_but_not_content() -> None:
    assert run("exact", "  Paris \n", expected="paris").value is True
    assert run("exact", "Paris.", expected="paris").value is False
    assert run({"exact": {"case_sensitive": True}}, "paris", expected="Paris").value is False
    assert run("exact", "", expected="").value is True
    assert run("exact", "ｐａｒｉｓ", expected="paris").value is True  # NFKC full-width


def test_contains_any_or_all() -> None:
    assert run({"contains": "Refund"}, "We issued a refund today.").value is True
    assert run({"contains": {"value": ["refund", "apology"], "all": True}}, "a refund").value is False
    assert run({"contains": ["refund", "apology"]}, "an apology").value is True
    assert run({"contains": "refund"}, "").value is False
    assert run({"contains": "€5"}, BIG + "€5").value is True


def test_regex_search_and_full_match() -> None:
    assert run({"regex": r"\d{4}-\d{2}"}, "due 2024-05 ok").value is True
    assert run({"regex": {"pattern": r"\d+", "full": True}}, " 42 ").value is True
    assert run({"regex": {"pattern": r"\d+", "full": True}}, "42 apples").value is False
    assert run({"regex": {"pattern": "ÉTÉ", "ignore_case": True}}, "un été").value is True


def test_regex_refuses_a_bad_pattern_with_its_position() -> None:
    with pytest.raises(ConfigError, match="position 3") as info:
        build_evaluators({"regex": "abc(d"})
    assert info.value.where == "evaluators.regex.pattern"


@pytest.mark.parametrize(
    ("text", "value"),
    [("The answer is 42.", 42.0), ("She pays $1,234.50 in total", 1234.5), ("-3 then 7", 7.0),
     ("#### 18", 18.0), ("no digits", None), ("", None), ("−5", -5.0), ("v2.0 costs .5", 0.5)],
)
def test_last_number(text: str, value: float | None) -> None:
    assert last_number(text) == value


def test_numeric_with_tolerance() -> None:
    assert run("numeric", "so 3 + 4 = 7", expected="#### 7").value is True
    assert run("numeric", "7.0000001", expected="7").value is True
    assert run({"numeric": {"rel_tol": 0.01}}, "100.5", expected="100").value is True
    wrong = run("numeric", "8", expected="7")
    assert wrong.value is False and "got 8" in wrong.reason
    assert run("numeric", "", expected="7").reason == "no number in the output"


def test_length_bounds() -> None:
    assert run({"length": {"max_words": 3}}, "one two three").value is True
    result = run({"length": {"max_chars": 10}}, BIG)
    assert result.value is False and "chars" in result.reason
    assert run({"length": {"min_chars": 1}}, "").value is False
    with pytest.raises(ConfigError, match="at least one bound"):
        build_evaluators({"length": {}})


def test_matches_baseline_text_labels_and_numbers() -> None:
    assert run("matches_baseline", "Positive", baseline="positive ").value is True
    config = {"matches_baseline": {"labels": ["positive", "negative"]}}
    assert run(config, "It is positive.", baseline="positive").value is True
    assert run(config, "unclear", baseline="positive").value is False
    assert run({"matches_baseline": {"numeric": True}}, "= 12", baseline="12 apples").value is True
    with pytest.raises(MissingReference):
        run("matches_baseline", "x")
