"""`cache_layout`: the static text first, so the provider's prompt cache can serve it.

A provider caches the prompt's prefix up to its first variable (optimizer.caching); a template
that opens with `Today is {{date}}.` has no static prefix at all. This move rewrites the template
so that its static text (instructions, examples, schema) comes before the first variable, keeping
meaning:
- only variables that are *referenced* move — a line that states a value and nothing else
  (`Today is {{date}}.`, `Customer: {{name}}`, a `Document:` heading over a line that is only
  `{{document}}`); they go, in their order, under a `Context:` heading just before the first
  variable that stays (or to the end of their message);
- a variable needed inside a sentence (`Write a {{tone}} reply to the email below.`) stays where it
  is, and so does everything after it: the move never proposes a layout that breaks a sentence;
- for Anthropic models (breakpoints are explicit there) it adds a `cache_control` breakpoint after
  the last wholly static message, through litellm's `cache_control_injection_points`; a moved
  system context becomes its own system message so the breakpoint can sit before it.
A candidate that only adds a breakpoint sends the very same text (`same_text` in its lineage):
certification checks its outputs are unchanged on a small sample instead of a full test.
Proposed only where the provider would cache the new prefix (its minimum length).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trimloop.core.pricing import cache_rule
from trimloop.core.templates import PLACEHOLDER, ChatMessage, Template
from trimloop.optimizer.caching import BREAKPOINTS, breakpoint_prefix_tokens, has_breakpoints, static_prefix_tokens
from trimloop.optimizer.spec import CandidateSpec, MoveContext

HEADING = "Context:"
# A line that only states a value: a short lead ending in a colon or a copula, one placeholder, punctuation.
_REFERENCE = re.compile(
    r"^\s*(?:[-*•]\s+)?(?P<lead>[^{}\n]{0,80}?(?::|=|\b(?:is|are|was|were))\s*)"
    r"(?P<quote>[\"'“(\[]?)\{\{\s*(?P<var>[A-Za-z_]\w*)\s*\}\}[\"'”)\]]?\s*[.!;]?\s*$")
_HEAD_ONLY = re.compile(r"^\s*[A-Z][\w '()/-]{0,40}:\s*$")  # "Document:" over a placeholder-only line
_ALONE = re.compile(r"^\s*(?:<\w+>)?\{\{\s*[A-Za-z_]\w*\s*\}\}(?:</\w+>)?\s*$")
_DEICTIC = re.compile(r"\b(?:following|below|above|this|these|those|next)\b", re.IGNORECASE)
_BACKWARD = re.compile(r"\b(?:above|preceding|previous|aforementioned)\b", re.IGNORECASE)
MAX_LEAD_WORDS = 10


def reference_lines(lines: list[str]) -> dict[int, int]:
    """Movable lines: index → the number of lines in its unit (1, or 2 for a heading over a
    placeholder-only line)."""
    found: dict[int, int] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _REFERENCE.match(line)
        if match and len(match.group("lead").split()) <= MAX_LEAD_WORDS and not _DEICTIC.search(match.group("lead")):
            found[i] = 1
        elif _HEAD_ONLY.match(line) and i + 1 < len(lines) and _ALONE.match(lines[i + 1]) \
                and not _DEICTIC.search(line):
            found[i] = 2
            i += 1
        i += 1
    return found


@dataclass(frozen=True)
class Layout:
    template: Template
    moved: list[str]  # the variables moved
    split_from: int | None = None  # chat: the index of the new system message holding the moved context


def static_first(template: Template) -> Layout | None:
    """The template with its referenced variables moved after the static text, or None when
    nothing can move (no variable before static text, or the first variable is needed in place)."""
    parts = template.parts()
    moved: list[str] = []
    new_parts: list[str] = []
    stop = False  # a variable that must stay was met: everything after it stays too
    last = max(i for i, part in enumerate(parts) if PLACEHOLDER.search(part)) if template.variables() else -1
    for index, part in enumerate(parts):
        if stop or not PLACEHOLDER.search(part):
            new_parts.append(part)
            continue
        lines = part.split("\n")
        refs = reference_lines(lines)
        if index == last:  # the prompt's input block (its last paragraph with a variable) stays where it is
            frozen = _last_block(lines)
            refs = {i: n for i, n in refs.items() if i not in frozen and i + n - 1 not in frozen}
        taken: list[str] = []
        kept: list[str] = []
        anchor = None  # the kept line where the first staying variable is
        i = 0
        while i < len(lines):
            if anchor is None and i in refs:
                unit = lines[i:i + refs[i]]
                taken.append("\n".join(u.strip() for u in unit))
                i += refs[i]
                continue
            if anchor is None and PLACEHOLDER.search(lines[i]):
                anchor = len(kept)
                stop = True
            kept.append(lines[i])
            i += 1
        static_after = [line for line in (kept if anchor is None else kept[:anchor]) if line.strip()]
        if not taken or not static_after or _BACKWARD.search("\n".join(static_after)):
            new_parts.append(part)  # nothing to gain, or the static text points back at a moved value
            stop = stop or bool(taken)
            continue
        block = [HEADING] + taken
        if anchor is None:
            body = _trim(kept) + [""] + block
        else:
            start = anchor
            while start > 0 and kept[start - 1].strip() and not PLACEHOLDER.search(kept[start - 1]) \
                    and _HEAD_ONLY.match(kept[start - 1]):
                start -= 1  # keep a heading with the variable it introduces
            body = _trim(kept[:start]) + [""] + block + [""] + kept[start:]
        new_parts.append("\n".join(body))
        moved += [m.group(1) for t in taken for m in PLACEHOLDER.finditer(t)]
        if index == 0 and template.kind == "text":
            break
    if not moved:
        return None
    if template.kind == "text":
        return Layout(Template.plain(new_parts[0]), moved)
    messages = [ChatMessage(role=m.role, content=c) for m, c in zip(template.messages or [], new_parts)]
    return Layout(Template(kind="chat", messages=messages), moved)


def split_context(template: Template) -> tuple[Template, int] | None:
    """A chat template whose first system message ends in a moved `Context:` block, with that
    block as a system message of its own (the same text to the model), and the static message's index."""
    messages = list(template.messages or [])
    for i, message in enumerate(messages):
        if message.role != "system" or f"\n\n{HEADING}\n" not in message.content:
            continue
        static, _, context = message.content.rpartition(f"\n\n{HEADING}\n")
        if PLACEHOLDER.search(static) or "\n\n" in context:
            return None
        parts = messages[:i] + [ChatMessage(role="system", content=static),
                                ChatMessage(role="system", content=f"{HEADING}\n{context}")] + messages[i + 1:]
        return Template(kind="chat", messages=parts), i
    return None


def last_static_message(template: Template) -> int | None:
    """The index of the last message before the first variable, when it is wholly static."""
    last = None
    for i, message in enumerate(template.messages or []):
        if PLACEHOLDER.search(message.content):
            break
        last = i
    return last


def _last_block(lines: list[str]) -> set[int]:
    """Line indexes of the last paragraph (blank-line separated) that holds a variable."""
    blocks: list[list[int]] = [[]]
    for i, line in enumerate(lines):
        if line.strip():
            blocks[-1].append(i)
        elif blocks[-1]:
            blocks.append([])
    with_var = [b for b in blocks if any(PLACEHOLDER.search(lines[i]) for i in b)]
    return set(with_var[-1]) if with_var else set()


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


@dataclass(frozen=True)
class CacheLayout:
    name: str = "cache_layout"
    composes: bool = True  # a shortened or trimmed version can be laid out for the cache too
    calls_model: bool = False

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]:
        version = candidate.version
        if any(step["move"] == self.name for step in candidate.lineage):
            return []
        rule = cache_rule(version.model)
        if rule is None:
            return []
        before = static_prefix_tokens(version.template)
        proposals = []
        layout = static_first(version.template)
        template = version.template
        if layout is not None:
            after = static_prefix_tokens(layout.template)
            if after >= rule.minimum and after > before:
                template = layout.template
                detail = (f"moved {', '.join('{{' + v + '}}' for v in layout.moved)} under a {HEADING!r} heading "
                          f"after the static text: the part the {rule.provider} cache can serve grows from "
                          f"{before:,} to {after:,} tokens")
                if rule.automatic:
                    proposals.append(candidate.then(version.replace(template=template), self.name, detail,
                                                    variant="reorder"))
                else:
                    split = split_context(template) if template.kind == "chat" else None
                    template = split[0] if split else template
                    point = last_static_message(template) if template.kind == "chat" else None
                    params = dict(version.params) | {BREAKPOINTS: [{"location": "message", "index": point}]}
                    if point is not None and breakpoint_prefix_tokens(template, params) >= rule.minimum:
                        proposals.append(candidate.then(
                            version.replace(template=template, params=params), self.name,
                            detail + f"; a cache_control breakpoint after message {point}", variant="reorder"))
        if not rule.automatic and version.template.kind == "chat" and not has_breakpoints(version.params):
            point = last_static_message(version.template)
            params = dict(version.params) | {BREAKPOINTS: [{"location": "message", "index": point}]}
            if point is not None and breakpoint_prefix_tokens(version.template, params) >= rule.minimum:
                proposals.append(candidate.then(
                    version.replace(params=params), self.name,
                    f"a cache_control breakpoint after message {point} "
                    f"({breakpoint_prefix_tokens(version.template, params):,} static tokens); the text "
                    "sent is unchanged", variant="breakpoint", same_text=True))
        return proposals
