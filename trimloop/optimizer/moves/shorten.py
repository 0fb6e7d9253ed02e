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
from trimloop.optimizer.spec import Candidate, MoveContext

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


LEVELS: list[tuple[str, list[str]]] = [
    ("light", ["whitespace", "markup"]),
    ("medium", ["whitespace", "markup", "filler", "dedupe"]),
    ("aggressive", ["whitespace", "markup", "filler", "dedupe", "labels"]),
]


def compress(template: Template, passes: list[str]) -> Template:
    seen: set[str] = set()
    steps: dict[str, Callable[[str], str]] = {
        "whitespace": whitespace,
        "markup": markup,
        "filler": filler,
        "dedupe": lambda t: dedupe_sentences(t, seen),
        "labels": label_descriptions,
    }

    def run(text: str) -> str:
        for name in passes:
            text = steps[name](text)
        return text

    if template.kind == "chat":
        return Template(kind="chat", messages=[
            ChatMessage(role=m.role, content=run(m.content)) for m in template.messages or []
        ])
    return Template.plain(run(template.text or ""))


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

    def propose(self, candidate: Candidate, *, context: MoveContext) -> list[Candidate]:
        original = candidate.version.template
        proposals: list[Candidate] = []
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
