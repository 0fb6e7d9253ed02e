"""Dataset-level label metrics."""

from __future__ import annotations

import pytest

from trimloop.evals.evaluators import label_metrics


def test_accuracy_macro_f1_and_per_label() -> None:
    expected = ["pos", "pos", "neg", "neg", "neu"]
    predicted = ["pos", "neg", "neg", None, "pos"]
    m = label_metrics(expected, predicted, labels=["pos", "neg", "neu"])
    assert m.n == 5 and m.accuracy == pytest.approx(0.4) and m.unparsed == 1
    assert m.per_label["pos"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2.0}
    assert m.per_label["neg"]["precision"] == 0.5 and m.per_label["neg"]["recall"] == 0.5
    assert m.per_label["neu"]["f1"] == 0.0  # never predicted: pulls macro-F1 down
    assert m.macro_f1 == pytest.approx((0.5 + 0.5 + 0.0) / 3)


def test_items_without_expected_are_skipped_and_lengths_must_match() -> None:
    assert label_metrics([None, "a"], ["a", "a"]).n == 1
    assert label_metrics([], []).n == 0
    with pytest.raises(ValueError):
        label_metrics(["a"], [])
