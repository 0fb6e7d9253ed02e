"""`shorten`: the same rules and placeholders in fewer words.

Deterministic passes, from light to aggressive: whitespace; decorative markup; filler and
politeness; duplicated sentences; over-long label descriptions (cut to their first clause).
Each level that changes the text is one candidate. A pass that would lose or add a placeholder
is refused. When a proposer model is configured, `LlmShorten` asks it for "same rules, fewer
words" and keeps the proposals that keep every placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from trimloop.core.templates import PLACEHOLDER, ChatMessage, Template
from trimloop.optimizer.spec import CandidateSpec, MoveContext

_FILLER = [
    r"\bthank you( very much)?( in advance)?( for your help)?[.!]*",
    r"\bthanks( a lot)?[.!]*",
    r"\bplease\b,?\s*",
    r"\bkindly\b\s*",
    r"\bI (would like|want|need) you to\s+",
    r"\byour (task|job) is to\s+",
    r"\bit is (very |really |extremely )?important (that you|to)\s+",
    r"\bmake sure (that )?(you )?",
    r"\bbe sure to\s+",
    r"\bremember to\s+",
    r"\bdo your best to\s+",
    r"\bas an AI( language model)?,?\s*",
    r"\b(very|really|extremely|carefully|basically|simply|actually|just|truly)\b\s*",
    r"\bI hope this helps[.!]*",
    r"\bfeel free to\s+",
]
_FILLER_RE = [re.compile(p, re.IGNORECASE) for p in _FILLER]
_MARKUP = [
    (re.compile(r"^\s*(#{1,6})\s*", re.MULTILINE), ""),  # heading marks
    (re.compile(r"^\s*([-*_=~]\s*){3,}$", re.MULTILINE), ""),  # horizontal rules
    (re.compile(r"(\*\*|__|~~)(.+?)\1"), r"\2"),  # bold, strikethrough
    (re.compile(r"[\u2500-\u257f\u2580-\u259f\u25a0-\u25ff\u2600-\u27bf\U0001F300-\U0001FAFF]"), ""),
]
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z{])")
_LABEL_LINE = re.compile(r"^(\s*(?:[-*•]|\d+[.)])?\s*[\w'\"/ -]{1,40}?\s*[:=–-]\s+)(.+)$")


def whitespace(text: str) -> str:
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def markup(text: str) -> str:
    for pattern, repl in _MARKUP:
        text = pattern.sub(repl, text)
    return whitespace(text)


def filler(text: str) -> str:
    for pattern in _FILLER_RE:
        text = pattern.sub("", text)
    text = re.sub(r"(^|[.!?]\s+|\n)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    return whitespace(re.sub(r"(?m)^[,.;:!]\s*", "", text))


def dedupe_sentences(text: str, seen: set[str]) -> str:
    """Drop sentences already said (here or in an earlier message); `seen` carries across."""
    lines = []
    for line in text.split("\n"):
        kept = []
        for sentence in _SENTENCE.split(line):
            key = re.sub(r"\W+", " ", sentence).strip().lower()
            if len(key.split()) >= 3 and not PLACEHOLDER.search(sentence):
                if key in seen:
                    continue
                seen.add(key)
            kept.append(sentence)
        lines.append(" ".join(kept))
    return whitespace("\n".join(lines))


def label_descriptions(text: str, max_words: int = 8) -> str:
    """`- billing: Questions about invoices, charges and …` → `- billing: Questions about invoices`."""
    out = []
    for line in text.split("\n"):
        match = _LABEL_LINE.match(line)
        if match and not PLACEHOLDER.search(line) and len(match.group(2).split()) > max_words:
            first = re.split(r"[,;.(]| - | – ", match.group(2), maxsplit=1)[0].split()
            line = match.group(1) + " ".join(first[:max_words]).rstrip()
        out.append(line)
    return "\n".join(out)


_RULE = re.compile(r"\b(answer|respond|reply|output|return|format|json|one word|only|exactly|must|never|always|"
                   r"label|classify|decide|choose|extract|positive|negative|yes|no)\b", re.IGNORECASE)


_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def essentials(text: str) -> str:
    """Keep only the instruction's rules: sentences about the task, labels or output format, the
    label list itself (bullets) and its heading; persona and advice ("You are a careful
    assistant", "read it carefully") go."""
    lines = text.split("\n")
    out: list[str] = []
    dropped = False
    for i, line in enumerate(lines):
        if _BULLET.match(line):
            out.append(line)
            continue
        if line.rstrip().endswith(":") and i + 1 < len(lines) and _BULLET.match(lines[i + 1]):
            out.append(line)  # "The teams are:" before its list
            continue
        sentences = [x for x in _SENTENCE.split(line) if x.strip()]
        kept = [x.strip() for x in sentences if _RULE.search(x)]
        dropped = dropped or len(kept) < len(sentences)
        if kept:
            out.append(" ".join(kept))
    return "\n".join(out) if dropped and out else text


LEVELS: list[tuple[str, list[str]]] = [
    ("light", ["whitespace", "markup"]),
    ("medium", ["whitespace", "markup", "filler", "dedupe"]),
    ("aggressive", ["whitespace", "markup", "filler", "dedupe", "labels"]),
    ("essentials", ["whitespace", "markup", "filler", "dedupe", "labels", "essentials"]),
]


def protected_lines(text: str) -> set[int]:
    """Lines that are content, not instruction: few-shot examples, `<example>` blocks, and the
    block that holds the placeholders (from its first line to the end)."""
    from trimloop.optimizer.moves.prune import text_examples

    lines = text.split("\n")
    keep: set[int] = set()
    for example in text_examples(text):
        keep.update(range(example.start, example.end))
    inside = False
    for i, line in enumerate(lines):
        if "<example>" in line.lower():
            inside = True
        if inside:
            keep.add(i)
        if "</example>" in line.lower():
            inside = False
    first = next((i for i, line in enumerate(lines) if PLACEHOLDER.search(line)), None)
    if first is not None:
        keep.update(range(first, len(lines)))
    return keep


def compress(template: Template, passes: list[str]) -> Template:
    """Apply the passes to instruction text only; examples and the placeholder block stay verbatim."""
    seen: set[str] = set()
    steps: dict[str, Callable[[str], str]] = {
        "whitespace": whitespace,
        "markup": markup,
        "filler": filler,
        "dedupe": lambda t: dedupe_sentences(t, seen),
        "labels": label_descriptions,
        "essentials": essentials,
    }

    def run(text: str, *, first: bool) -> str:
        for name in passes:
            if name == "essentials" and not first:
                continue  # persona trimming only before the first example
            text = steps[name](text)
        return text

    def text_only(text: str) -> str:
        lines = text.split("\n")
        keep = protected_lines(text)
        out: list[str] = []
        segment: list[str] = []
        first = True

        def flush() -> None:
            nonlocal first
            if segment:
                body = run("\n".join(segment), first=first)
                if body.strip():
                    out.append(body)
                segment.clear()
            first = False

        for i, line in enumerate(lines):
            if i in keep:
                flush()
                if out and out[-1] != "" and i > 0 and (i - 1) not in keep:
                    out.append("")  # a blank line between instruction and examples
                out.append(line)
            else:
                segment.append(line)
        flush()
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")

    if template.kind == "chat":
        # Only system messages are instructions; user and assistant turns are content.
        return Template(kind="chat", messages=[
            ChatMessage(role=m.role, content=run(m.content, first=True) if m.role == "system" else m.content)
            for m in template.messages or []
        ])
    return Template.plain(text_only(template.text or ""))


def same_placeholders(a: Template, b: Template) -> bool:
    def counts(t: Template) -> list[str]:
        return sorted(m.group(1) for part in t.parts() for m in PLACEHOLDER.finditer(part))

    return counts(a) == counts(b)


def keeps_completion_cue(before: Template, after: Template) -> bool:
    """A plain-text prompt's ending (`…\\nSentiment:`) is what a base model continues from."""
    if before.kind != "text":
        return True
    tail = (before.text or "").rstrip().split("\n")[-1]
    return (after.text or "").rstrip().endswith(tail.strip())


@dataclass(frozen=True)
class Shorten:
    name: str = "shorten"
    composes: bool = True  # also applied to other moves' proposals
    calls_model: bool = False

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]:
        original = candidate.version.template
        proposals: list[CandidateSpec] = []
        seen = {_text_of(original)}
        for level, passes in LEVELS:
            shorter = compress(original, passes)
            text = _text_of(shorter)
            if text in seen or len(text) >= len(_text_of(original)):
                continue
            if not same_placeholders(original, shorter) or not keeps_completion_cue(original, shorter):
                continue
            seen.add(text)
            saved = 1 - len(text) / max(1, len(_text_of(original)))
            version = candidate.version.replace(template=shorter)
            proposals.append(candidate.then(version, self.name, f"{level}: −{saved:.0%} characters"))
        return proposals


def _text_of(template: Template) -> str:
    return "\n\n".join(template.parts())
