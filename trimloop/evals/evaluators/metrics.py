"""Dataset-level metrics built from item-level records: accuracy, macro-F1, per-label P/R/F1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabelMetrics:
    n: int
    accuracy: float
    macro_f1: float
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)  # precision, recall, f1, support
    unparsed: int = 0  # outputs in which no single label was found


def label_metrics(
    expected: Sequence[str | None], predicted: Sequence[str | None], labels: Sequence[str] | None = None
) -> LabelMetrics:
    """Accuracy and per-label precision/recall/F1; an unparsed prediction (None) counts as wrong.

    Items without an expected label are skipped. Macro-F1 averages over `labels` (default: every
    label seen in expected or predicted), so a class the model never predicts pulls it down.
    """
    if len(expected) != len(predicted):
        raise ValueError(f"expected has {len(expected)} items, predicted {len(predicted)}")
    pairs = [(e, p) for e, p in zip(expected, predicted) if e is not None]
    classes = list(labels) if labels else sorted({e for e, _ in pairs} | {p for _, p in pairs if p})
    if not pairs:
        return LabelMetrics(n=0, accuracy=0.0, macro_f1=0.0)
    per_label: dict[str, dict[str, float]] = {}
    for label in classes:
        tp = sum(e == label and p == label for e, p in pairs)
        fp = sum(e != label and p == label for e, p in pairs)
        fn = sum(e == label and p != label for e, p in pairs)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1,
                            "support": float(tp + fn)}
    accuracy = sum(e == p for e, p in pairs) / len(pairs)
    macro = sum(v["f1"] for v in per_label.values()) / len(per_label) if per_label else 0.0
    return LabelMetrics(n=len(pairs), accuracy=accuracy, macro_f1=macro, per_label=per_label,
                        unparsed=sum(p is None for _, p in pairs))
