"""`trim_output`: the same task with fewer output tokens, which cost 4–8× input tokens on most APIs.

From the baseline's outputs on the search items (`MoveContext.outputs`), up to four candidates:
- **cap**: `max_tokens` at what the longest well-scored answer needed (its tokens up to the end of
  the part the evaluators read, reasoning included), plus headroom — never below it;
- **brevity**: where well-scored outputs carry chatter around the answer, one instruction to give
  the answer only ("Answer with the label only."), with the cap;
- **compact JSON**: where the answers are indented JSON, ask for one line without indentation
  (and compact the template's own JSON examples), with a cap at the compact length;
- **no chain of thought**: where the template asks for reasoning before the answer and every
  evaluator reads only the final answer (`MoveContext.answer`), drop that request.
Each candidate's `Outlook` says how many output tokens it expects (for ranking); the saving is
priced on the tokens the calls really produce, output and reasoning (core.pricing).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from trimloop.core.catalog import count_tokens
from trimloop.core.templates import PLACEHOLDER, ChatMessage, Template
from trimloop.evals.evaluators import NamedEvaluator
from trimloop.optimizer.spec import Answer, CandidateSpec, MoveContext, Outlook, OutputFact

HEADROOM = 1.25  # the cap is the longest needed answer × this, plus MIN_SLACK tokens
MIN_SLACK = 2
MIN_GOOD = 5  # well-scored outputs needed before a cap is proposed
CHATTER = 0.6  # outputs whose answer is under this share of their tokens carry chatter

_COT = [
    r"(?:let'?s|please|you should|you must)?\s*think (?:it through )?step[- ]by[- ]step[^.!?\n]*[.!?]?",
    r"(?:first,?\s*)?(?:explain|describe|give|write|show|state|outline) (?:your|the) (?:reasoning|thinking|"
    r"thought process|rationale|work)[^.!?\n]*[.!?]?",
    r"reason (?:carefully |briefly )?(?:step[- ]by[- ]step |about it )?before (?:you )?(?:answer|giv|respond)[^.!?\n]*[.!?]?",
    r"think (?:carefully|aloud|out loud|hard) (?:before|about)[^.!?\n]*[.!?]?",
    r"show your work[^.!?\n]*[.!?]?",
]
_COT_RE = re.compile("|".join(f"(?:{p})" for p in _COT), re.IGNORECASE)
_INDENT_WORDS = re.compile(r"[^.!?\n]*\b(?:indent\w*|pretty[- ]print\w*)\b[^.!?\n]*[.!?]?", re.IGNORECASE)

BREVITY = {"label": "Answer with the label only.", "number": "Answer with the final number only.",
           "json": "Output only the JSON, with no other text."}
COMPACT = "Write the JSON on one line, without indentation or spaces between items."
# Evaluators that read a part of the output (a label, the last number, the first JSON value), not all of it.
_READERS = {"label": "label", "numeric": "number", "json_fields": "json", "json_valid": "json", "json_schema": "json"}


def answer_of(evaluators: Sequence[NamedEvaluator]) -> Answer | None:
    """What part of an output every evaluator reads, or None when one reads the whole text
    (exact, rouge, a judge …): then chatter and reasoning may matter, and only the cap is safe."""
    kinds, labels = set(), []
    for named in evaluators:
        name = named.evaluator.name
        options = named.evaluator.options()
        if name == "matches_baseline" and (options.get("labels") or options.get("numeric")):
            kind = "label" if options.get("labels") else "number"
        else:
            kind = _READERS.get(name)
        if kind is None:
            return None
        kinds.add(kind)
        labels += list(options.get("labels") or [])
    if len(kinds) != 1:
        return None
    return Answer(kind=kinds.pop(), labels=tuple(dict.fromkeys(labels)))


def answer_span(text: str, answer: Answer | None) -> tuple[int, int] | None:
    """[start, end) of what the evaluators read in `text`: the first label named, the last number,
    the first JSON value; the whole text when they read all of it; None when it is not there."""
    if answer is None:
        return (0, len(text)) if text.strip() else None
    if answer.kind == "label":
        hits = [m for label in answer.labels
                for m in [re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.IGNORECASE)] if m]
        first = min(hits, key=lambda m: m.start(), default=None)
        return (first.start(), first.end()) if first else None
    if answer.kind == "number":
        numbers = list(re.finditer(r"[-−]?\d+(?:,\d{3})*(?:\.\d+)?", text))
        return (numbers[-1].start(), numbers[-1].end()) if numbers else None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            _value, end = decoder.raw_decode(text, match.start())
        except (json.JSONDecodeError, RecursionError):
            continue
        return match.start(), end
    return None


def _scaled(fact: OutputFact, part: str) -> float:
    """Tokens of `part` of the output in the model's own tokens: its tiktoken share of the text × the
    visible tokens the provider reported (a local model's tokenizer is not OpenAI's)."""
    whole = count_tokens(fact.text)
    visible = max(0, fact.output_tokens - fact.reasoning_tokens)
    if whole == 0:
        return 0.0
    return visible * count_tokens(part) / whole


@dataclass(frozen=True)
class Needs:
    """What the well-scored outputs needed: tokens up to the end of the answer (reasoning included),
    and the answer alone."""

    upto: list[float]
    alone: list[float]
    share: float  # mean share of an output's visible tokens that is the answer

    @property
    def cap(self) -> int:
        return math.ceil(max(self.upto) * HEADROOM) + MIN_SLACK


def needs(outputs: Sequence[OutputFact], answer: Answer | None) -> Needs | None:
    good = [f for f in outputs if f.good and f.text.strip()]
    upto, alone, shares = [], [], []
    for fact in good:
        span = answer_span(fact.text, answer)
        if span is None:
            continue
        before = _scaled(fact, fact.text[:span[1]])
        part = _scaled(fact, fact.text[span[0]:span[1]])
        upto.append(fact.reasoning_tokens + before)
        alone.append(part)
        visible = max(1, fact.output_tokens - fact.reasoning_tokens)
        shares.append(min(1.0, part / visible))
    if len(upto) < MIN_GOOD:
        return None
    return Needs(upto, alone, statistics.fmean(shares))


def expected_with_cap(outputs: Sequence[OutputFact], cap: int) -> float:
    return statistics.fmean(min(f.output_tokens, cap) for f in outputs)


def edit_instructions(template: Template, edit: Callable[[str], str], *, first: bool = True) -> Template:
    """Apply `edit` to the instruction text: a chat template's system messages (else its first
    user message), a text template's first paragraph when it holds no placeholder."""
    if template.kind == "chat":
        messages = list(template.messages or [])
        targets = [i for i, m in enumerate(messages) if m.role == "system"] or \
            [next(i for i, m in enumerate(messages) if m.role == "user")]
        if first:
            targets = targets[-1:]
        return Template(kind="chat", messages=[ChatMessage(role=m.role, content=edit(m.content) if i in targets
                                                           else m.content) for i, m in enumerate(messages)])
    text = template.text or ""
    head, sep, rest = text.partition("\n\n")
    if sep and not PLACEHOLDER.search(head):
        return Template.plain(edit(head) + sep + rest)
    return Template.plain(edit(text)) if not first else template


def add_sentence(template: Template, sentence: str) -> Template:
    """`sentence` at the end of the instructions (a text template whose first paragraph holds a
    placeholder gets it as a paragraph before the last one, so its completion cue stays last)."""
    def append(text: str) -> str:
        return text.rstrip() + ("\n" if text.rstrip().endswith(":") else " ") + sentence

    edited = edit_instructions(template, append)
    if edited != template:
        return edited
    text = template.text or ""
    head, sep, last = text.rpartition("\n\n")
    return Template.plain(f"{head}\n\n{sentence}\n\n{last}" if sep else f"{sentence}\n\n{text}")


def drop_cot(template: Template) -> tuple[Template, list[str]]:
    """The template without its requests for reasoning, and the phrases dropped."""
    dropped: list[str] = []

    def cut(text: str) -> str:
        def gone(match: re.Match[str]) -> str:
            dropped.append(match.group(0).strip())
            return ""
        out = _COT_RE.sub(gone, text)
        out = re.sub(r"[ \t]{2,}", " ", out)
        return re.sub(r"(?m)^[ \t]+|[ \t]+$", "", out)

    if template.kind == "chat":
        messages = [ChatMessage(role=m.role, content=cut(m.content) if m.role == "system" else m.content)
                    for m in template.messages or []]
        result = Template(kind="chat", messages=messages)
    else:
        result = edit_instructions(template, cut, first=False)
    return result, [d for d in dropped if d]


def compact_json(template: Template) -> Template:
    """Indented JSON examples in the template written on one line; sentences asking for indentation gone."""
    def squeeze(text: str) -> str:
        text = _INDENT_WORDS.sub("", text)
        decoder = json.JSONDecoder()
        out, i = [], 0
        for match in re.finditer(r"[\[{]", text):
            if match.start() < i:
                continue
            try:
                value, end = decoder.raw_decode(text, match.start())
            except (json.JSONDecodeError, RecursionError):
                continue
            chunk = text[match.start():end]
            if "\n" in chunk:
                out.append(text[i:match.start()] + json.dumps(value, ensure_ascii=False, separators=(",", ":")))
                i = end
        return "".join(out) + text[i:]

    if template.kind == "chat":
        return Template(kind="chat", messages=[ChatMessage(role=m.role, content=squeeze(m.content))
                                               for m in template.messages or []])
    return Template.plain(squeeze(template.text or ""))


def _indented_json(outputs: Sequence[OutputFact]) -> list[tuple[OutputFact, str, str]]:
    """(fact, the JSON as written, the same compact) for good outputs whose JSON spans lines."""
    found = []
    for fact in outputs:
        if not fact.good:
            continue
        span = answer_span(fact.text, Answer(kind="json"))
        if span is None:
            continue
        chunk = fact.text[span[0]:span[1]]
        if "\n" in chunk:
            found.append((fact, chunk, json.dumps(json.loads(chunk), ensure_ascii=False, separators=(",", ":"))))
    return found


def _tokens(n: float) -> str:
    return f"{n:.0f} token{'s' if round(n) != 1 else ''}"


@dataclass(frozen=True)
class TrimOutput:
    name: str = "trim_output"
    composes: bool = True  # also on other moves' proposals (a retargeted or shortened version)
    calls_model: bool = False

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]:
        outputs = context.outputs
        if not outputs or any(step["move"] == self.name for step in candidate.lineage):
            return []
        version, answer = candidate.version, context.answer
        current = version.params.get("max_tokens")
        need = needs(outputs, answer)
        mean_out = statistics.fmean(f.output_tokens for f in outputs)
        proposals: list[CandidateSpec] = []

        def propose(template: Template, cap: int | None, expect: float, words: list[str], kind: str) -> None:
            params = dict(version.params)
            if cap is not None:
                if current is not None and cap >= int(current):
                    cap = None
                else:
                    params["max_tokens"] = cap
                    words.append(f"max_tokens {current if current is not None else 'unset'} → {cap}")
            changed = version.replace(template=template, params=params)
            if changed.sha == version.sha or expect >= mean_out:
                return
            detail = "; ".join(words) + f" (about {_tokens(mean_out)} → {_tokens(expect)} out per call)"
            proposals.append(candidate.then(changed, self.name, detail, outlook=Outlook(output_tokens=expect),
                                            variant=kind))

        if need is not None:
            cap = need.cap
            why = (f"the longest well-scored answer needed {_tokens(max(need.upto))}"
                   f"{'' if answer is None else ' up to the end of the answer'}, +{HEADROOM - 1:.0%} headroom")
            propose(version.template, cap, expected_with_cap(outputs, cap), [why], "cap")
            if answer is not None and need.share < CHATTER:
                sentence = BREVITY[answer.kind]
                expect = statistics.fmean(need.alone) + 1
                propose(add_sentence(version.template, sentence), cap, expect,
                        [f"added {sentence!r}: the answer was {need.share:.0%} of the well-scored outputs"], "brevity")
        indented = _indented_json(outputs)
        if len(indented) >= MIN_GOOD and len(indented) >= len([f for f in outputs if f.good]) / 2:
            ratio = statistics.fmean(count_tokens(c) / max(1, count_tokens(w)) for _, w, c in indented)
            expect = statistics.fmean(f.output_tokens - (f.output_tokens - f.reasoning_tokens) * (1 - ratio) * (
                count_tokens(w) / max(1, count_tokens(f.text))) for f, w, _ in indented)
            compact = compact_json(version.template)
            compact = add_sentence(compact, COMPACT)
            cap = math.ceil(max(f.reasoning_tokens + _scaled(f, f.text[:f.text.find(w)]) + _scaled(f, w) * ratio
                                for f, w, _ in indented) * HEADROOM) + MIN_SLACK
            propose(compact, cap, expect, [f"asked for compact JSON (one line, no indentation): the JSON of "
                                           f"well-scored outputs is {1 - ratio:.0%} fewer tokens written compactly"],
                    "compact_json")
        if answer is not None:
            without, dropped = drop_cot(version.template)
            if dropped:
                sentence = BREVITY[answer.kind]
                without = add_sentence(without, sentence)
                alone = need.alone if need is not None else [
                    _scaled(f, f.text[s:e]) for f in outputs if f.good
                    for s, e in [answer_span(f.text, answer) or (0, 0)] if e > s]
                if alone:
                    expect = statistics.fmean(alone) + 1
                    cap = math.ceil(max(alone) * HEADROOM) + MIN_SLACK + 8
                    quoted = "; ".join(repr(d) for d in dropped[:3])
                    propose(without, cap, expect,
                            [f"dropped the request for reasoning ({quoted}): the evaluators read only the final "
                             f"{answer.kind}", f"added {sentence!r}"], "no_reasoning")
        return proposals


def output_facts(results: Sequence[Any], keys: Sequence[str]) -> list[OutputFact]:
    """OutputFacts from ItemResults (the baseline on the search items): good = every evaluator's
    score ≥ 0.99 (a correct label, all JSON fields right)."""
    out = []
    for r in results:
        if r.output is None:
            continue
        scores = [r.scores.get(k, 0.0) for k in keys]
        out.append(OutputFact(text=r.output, output_tokens=r.output_tokens, reasoning_tokens=r.reasoning_tokens,
                              good=bool(scores) and min(scores) >= 0.99))
    return out
