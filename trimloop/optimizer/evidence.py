"""What a reviewer sees: a word-level template diff, the model and parameter changes, and the
items where the candidate's output differs from the baseline's."""

from __future__ import annotations

import difflib
import re
from typing import Any

from trimloop.evals.runner import EvalItem, ItemResult
from trimloop.optimizer.spec import VersionSpec

_WORDS = re.compile(r"\s+|[^\s]+")


def word_diff(before: str, after: str) -> list[list[str]]:
    """[[op, text], …] with op in equal | delete | insert, on words and whitespace."""
    a, b = _WORDS.findall(before), _WORDS.findall(after)
    out: list[list[str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag in ("equal", "delete"):
            out.append([tag, "".join(a[i1:i2])])
        if tag == "insert":
            out.append(["insert", "".join(b[j1:j2])])
        if tag == "replace":
            out += [["delete", "".join(a[i1:i2])], ["insert", "".join(b[j1:j2])]]
    return out


def template_text(version: VersionSpec) -> str:
    template = version.template
    if template.kind == "chat":
        return "\n\n".join(f"[{m.role}]\n{m.content}" for m in template.messages or [])
    return template.text or ""


def changes(before: VersionSpec, after: VersionSpec) -> dict[str, Any]:
    b_text, a_text = template_text(before), template_text(after)
    params = sorted(set(before.params) | set(after.params))
    return {
        "template_diff": word_diff(b_text, a_text),
        "template_chars": [len(b_text), len(a_text)],
        "template_kind": [before.template.kind, after.template.kind],
        "model": [before.model, after.model],
        "params": {k: [before.params.get(k), after.params.get(k)] for k in params
                   if before.params.get(k) != after.params.get(k)},
    }


def differing_items(items: list[EvalItem], baseline: dict[Any, ItemResult],
                    candidate: dict[Any, list[ItemResult]], limit: int = 20) -> list[dict[str, Any]]:
    """Up to `limit` items whose outputs differ, score changes first."""
    rows = []
    for item in items:
        if item.id not in candidate or item.id not in baseline:
            continue
        cand = candidate[item.id][0]
        base = baseline[item.id]
        if (cand.output or "").strip() == (base.output or "").strip():
            continue
        changed = sum(abs(cand.scores.get(k, 0) - base.scores.get(k, 0)) for k in base.scores)
        rows.append((-changed, str(item.id), {
            "item_id": item.id, "inputs": item.inputs, "expected": item.expected,
            "baseline_output": base.output, "candidate_output": cand.output,
            "baseline_scores": base.scores, "candidate_scores": cand.scores,
        }))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows[:limit]]
