"""Human feedback from production logs (thumbs, ratings, labels), summarised for reports.

Feedback stays on dataset items as logged: `{name, value, source}`. A summary per name gives how
many items carry it and, for numbers and booleans, the mean (thumbs up = 1); for strings, the
count of each value. Reviewers see it beside the evaluator scores: it is what users said of the
baseline's answers, not evidence about the candidate.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any


def feedback_summary(feedback_lists: Iterable[list[dict[str, Any]] | None]) -> dict[str, dict[str, Any]]:
    """{name: {items, sources, mean?, values?}} over the items' feedback lists."""
    numbers: dict[str, list[float]] = defaultdict(list)
    words: dict[str, Counter[str]] = defaultdict(Counter)
    items: Counter[str] = Counter()
    sources: dict[str, Counter[str]] = defaultdict(Counter)
    for entries in feedback_lists:
        seen = set()
        for entry in entries or []:
            if not isinstance(entry, dict) or "name" not in entry:
                continue
            name, value = str(entry["name"]), entry.get("value")
            if name not in seen:
                items[name] += 1
                seen.add(name)
            sources[name][str(entry.get("source") or "user")] += 1
            if isinstance(value, bool):
                numbers[name].append(1.0 if value else 0.0)
            elif isinstance(value, (int, float)):
                numbers[name].append(float(value))
            elif value is not None:
                words[name][str(value)] += 1
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(items):
        summary: dict[str, Any] = {"items": items[name], "sources": dict(sources[name])}
        if numbers[name]:
            summary["mean"] = statistics.fmean(numbers[name])
            summary["n"] = len(numbers[name])
        if words[name]:
            summary["values"] = dict(words[name].most_common(20))
        out[name] = summary
    return out
