"""`prune_examples`: find the few-shot examples and try smaller, label-diverse subsets.

Examples are found as user/assistant pairs before a chat template's last user message, as
`<example>…</example>` blocks, or as runs of `Key: value` lines with the same keys as the block
that holds the placeholders (`Review: …` / `Sentiment: …`). Subsets of 0, 1, 2 and half the
examples are proposed, picking examples with different outputs first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from trimloop.core.templates import PLACEHOLDER, ChatMessage, Template
from trimloop.optimizer.spec import CandidateSpec, MoveContext

_KEY = re.compile(r"^\s*([A-Za-z][\w ]{0,30}?)\s*:")
_TAG = re.compile(r"<example>.*?</example>\s*", re.IGNORECASE | re.DOTALL)
_INTRO = re.compile(r"example", re.IGNORECASE)


@dataclass(frozen=True)
class Example:
    start: int  # line span [start, end) in a text template, or message indexes in a chat one
    end: int
    output: str


def _key(line: str) -> str | None:
    match = _KEY.match(line)
    return match.group(1).strip().lower() if match else None


def text_examples(text: str) -> list[Example]:
    """Runs of `Key: value` lines shaped like the placeholder block, before it."""
    lines = text.split("\n")
    query = next((i for i, line in enumerate(lines) if PLACEHOLDER.search(line) and _key(line)), None)
    if query is None:
        return []
    keys = []
    for line in lines[query:]:
        key = _key(line)
        if key is None:
            break
        keys.append(key)
    if len(keys) < 2:
        return []
    found, i = [], 0
    while i <= query - len(keys):
        window = lines[i : i + len(keys)]
        if [_key(line) for line in window] == keys and not any(PLACEHOLDER.search(x) for x in window):
            output = window[-1].split(":", 1)[1].strip()
            found.append(Example(i, i + len(keys), output))
            i += len(keys)
        else:
            i += 1
    return found if len(found) >= 1 else []


def tag_examples(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for m in _TAG.finditer(text)]


def chat_examples(template: Template) -> list[Example]:
    messages = template.messages or []
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last_user is None:
        return []
    found = []
    i = 0
    while i < last_user - 1:
        if messages[i].role == "user" and messages[i + 1].role == "assistant":
            found.append(Example(i, i + 2, messages[i + 1].content.strip()))
            i += 2
        else:
            i += 1
    return found


def diverse_subset(examples: list, k: int, output_of) -> list:  # type: ignore[no-untyped-def]
    """k examples, round-robin over distinct outputs in order of first appearance."""
    groups: dict[str, list] = {}
    for example in examples:
        groups.setdefault(output_of(example).lower(), []).append(example)
    chosen: list = []
    while len(chosen) < k:
        for group in groups.values():
            if group and len(chosen) < k:
                chosen.append(group.pop(0))
    order = {id(e): n for n, e in enumerate(examples)}
    return sorted(chosen, key=lambda e: order[id(e)])


def subset_sizes(n: int) -> list[int]:
    return sorted({k for k in (0, 1, 2, math.ceil(n / 2)) if k < n})


def _drop_lines(text: str, keep: list[Example], every: list[Example]) -> str:
    lines = text.split("\n")
    drop: set[int] = set()
    for example in every:
        if example not in keep:
            drop.update(range(example.start, example.end))
    if not keep and every:
        first = every[0].start
        intro = next((j for j in range(first - 1, -1, -1) if lines[j].strip()), None)
        if intro is not None and _INTRO.search(lines[intro]) and not PLACEHOLDER.search(lines[intro]):
            drop.add(intro)
    kept = [line for j, line in enumerate(lines) if j not in drop]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip("\n")


@dataclass(frozen=True)
class PruneExamples:
    name: str = "prune_examples"
    composes: bool = True  # also applied to other moves' proposals
    calls_model: bool = False

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]:
        template = candidate.version.template
        proposals = []
        for k, pruned, n in self._variants(template):
            version = candidate.version.replace(template=pruned)
            proposals.append(candidate.then(version, self.name, f"keep {k} of {n} examples"))
        return proposals

    def _variants(self, template: Template) -> list[tuple[int, Template, int]]:
        if template.kind == "chat":
            examples = chat_examples(template)
            out = []
            for k in subset_sizes(len(examples)):
                keep = diverse_subset(list(examples), k, lambda e: e.output)
                drop = {j for e in examples if e not in keep for j in range(e.start, e.end)}
                messages = [ChatMessage(role=m.role, content=m.content)
                            for j, m in enumerate(template.messages or []) if j not in drop]
                out.append((k, Template(kind="chat", messages=messages), len(examples)))
            return out
        text = template.text or ""
        tags = tag_examples(text)
        if len(tags) >= 2:
            out = []
            for k in subset_sizes(len(tags)):
                keep = diverse_subset(list(tags), k, lambda t: t[2][-60:])
                pruned = "".join(
                    text[prev_end:start] + (block if (start, end, block) in keep else "")
                    for (start, end, block), prev_end in zip(tags, [0] + [t[1] for t in tags[:-1]])
                ) + text[tags[-1][1]:]
                out.append((k, Template.plain(pruned), len(tags)))
            return out
        examples = text_examples(text)
        return [
            (k, Template.plain(_drop_lines(text, diverse_subset(list(examples), k, lambda e: e.output), examples)),
             len(examples))
            for k in subset_sizes(len(examples))
        ]
