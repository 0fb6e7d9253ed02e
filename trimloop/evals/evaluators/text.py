"""Evaluators on plain text: exact, label, contains, regex, numeric, length, matches_baseline."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from trimloop.core.errors import ConfigError
from trimloop.evals.evaluators.base import EvalContext, Evaluator, Reason, reference

Against = Literal["expected", "baseline"]


def norm_text(text: str, *, case_sensitive: bool = False) -> str:
    """NFKC, whitespace collapsed, stripped; case-folded unless `case_sensitive`."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text if case_sensitive else text.casefold()


def _words(text: str) -> str:
    """Case-folded words separated by single spaces: punctuation and markup dropped."""
    return " ".join(re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()))


def find_labels(text: str, labels: list[str], *, mode: str = "only") -> tuple[str | None, list[str]]:
    """The label an output names, and every label it mentions.

    Matching is on whole words, ignoring case and punctuation; longer labels win over labels
    they contain ("Billing Disputes" over "Disputes"). `mode="only"`: the output must mention
    exactly one distinct label (a label said twice is fine; two different labels are ambiguous
    and give None). `mode="first"`: the first label mentioned wins.
    """
    words = f" {_words(text)} "
    by_length = sorted(labels, key=lambda lab: len(_words(lab)), reverse=True)
    taken = [False] * len(words)
    hits: list[tuple[int, str]] = []
    for label in by_length:
        needle = f" {_words(label)} "
        if needle.strip() == "":
            continue
        start = words.find(needle)
        while start != -1:
            span = range(start + 1, start + len(needle) - 1)
            if not any(taken[i] for i in span):
                for i in span:
                    taken[i] = True
                hits.append((start, label))
            start = words.find(needle, start + 1)
    hits.sort()
    mentioned = list(dict.fromkeys(label for _, label in hits))
    if not mentioned:
        return None, []
    if mode == "first" or len(mentioned) == 1:
        return hits[0][1], mentioned
    return None, mentioned


@dataclass
class Exact(Evaluator):
    """The output equals the reference (after trimming and, by default, ignoring case)."""

    name = "exact"
    case_sensitive: bool = False
    against: Against = "expected"

    def evaluate(self, ctx: EvalContext) -> Reason:
        ref = reference(ctx, self.against, self.name)
        same = norm_text(ctx.output, case_sensitive=self.case_sensitive) == norm_text(
            ref, case_sensitive=self.case_sensitive
        )
        return Reason(same, None if same else f"output differs from the {self.against} answer")


@dataclass
class Label(Evaluator):
    """Reads one of `labels` from free text ("The sentiment is positive." → positive)."""

    name = "label"
    positional = "labels"
    labels: list[str]
    mode: Literal["only", "first"] = "only"
    against: Against = "expected"

    def check(self, where: str) -> None:
        if len(self.labels) < 2:
            raise ConfigError(
                f"label needs at least two labels, got {self.labels!r}",
                where=f"{where}.labels",
                hint='list the classes, e.g. {"label": {"labels": ["positive", "negative"]}}',
            )
        blanks = [lab for lab in self.labels if not _words(lab)]
        if blanks:
            raise ConfigError(
                f"labels {blanks!r} have no letters or digits", where=f"{where}.labels",
                hint="labels are matched on words; use names with letters or digits",
            )

    def evaluate(self, ctx: EvalContext) -> Reason:
        ref = reference(ctx, self.against, self.name)
        expected, _ = find_labels(ref, self.labels, mode="first")
        predicted, mentioned = find_labels(ctx.output, self.labels, mode=self.mode)
        if predicted is None:
            why = f"ambiguous: mentions {', '.join(mentioned)}" if mentioned else "no label found"
            return Reason(False, why, label=None)
        ok = expected is not None and _words(predicted) == _words(expected)
        return Reason(ok, None if ok else f"predicted {predicted!r}, expected {expected!r}", label=predicted)


@dataclass
class Contains(Evaluator):
    """The output contains `value` (a string or a list: any, or all with `all=true`)."""

    name = "contains"
    positional = "value"
    value: str | list[str] | None = None
    case_sensitive: bool = False
    all: bool = False

    def evaluate(self, ctx: EvalContext) -> Reason:
        needles = self.value if self.value is not None else reference(ctx, "expected", self.name)
        needles = [needles] if isinstance(needles, str) else needles
        hay = norm_text(ctx.output, case_sensitive=self.case_sensitive)
        found = [n for n in needles if norm_text(n, case_sensitive=self.case_sensitive) in hay]
        ok = len(found) == len(needles) if self.all else bool(found)
        missing = [n for n in needles if n not in found]
        return Reason(ok, None if ok else f"missing {missing[:5]!r}")


@dataclass
class Regex(Evaluator):
    """The output matches `pattern` (re.search; `full=true` for the whole output)."""

    name = "regex"
    positional = "pattern"
    pattern: str
    ignore_case: bool = False
    full: bool = False

    def check(self, where: str) -> None:
        try:
            self._compiled = re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)
        except re.error as exc:
            raise ConfigError(
                f"invalid regular expression {self.pattern!r}: {exc.msg} at position {exc.pos}",
                where=f"{where}.pattern",
                hint="use Python `re` syntax; escape literal characters such as ( [ . with \\",
            ) from None

    def evaluate(self, ctx: EvalContext) -> Reason:
        compiled = getattr(self, "_compiled", None) or re.compile(self.pattern)
        match = compiled.fullmatch(ctx.output.strip()) if self.full else compiled.search(ctx.output)
        return Reason(match is not None, None if match else f"no match for {self.pattern!r}")


_NUMBER = re.compile(r"(?<![\w.])[-−]?\d+(?:,\d{3})*(?:\.\d+)?|(?<![\w.])[-−]?\.\d+")


def last_number(text: str) -> float | None:
    """The last number written in the text ("… so she pays $1,234.50." → 1234.5)."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    raw = found[-1].replace(",", "").replace("−", "-")
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class Numeric(Evaluator):
    """The last number in the output equals the reference's within `abs_tol` / `rel_tol`."""

    name = "numeric"
    abs_tol: float = 1e-6
    rel_tol: float = 0.0
    against: Against = "expected"

    def evaluate(self, ctx: EvalContext) -> Reason:
        want = last_number(reference(ctx, self.against, self.name))
        got = last_number(ctx.output)
        if want is None:
            return Reason(False, f"the {self.against} answer has no number")
        if got is None:
            return Reason(False, "no number in the output")
        ok = math.isclose(got, want, abs_tol=self.abs_tol, rel_tol=self.rel_tol)
        return Reason(ok, None if ok else f"got {got:g}, expected {want:g}")


@dataclass
class Length(Evaluator):
    """The output's length (characters or words) is within bounds."""

    name = "length"
    min_chars: int | None = None
    max_chars: int | None = None
    min_words: int | None = None
    max_words: int | None = None

    def check(self, where: str) -> None:
        if all(v is None for v in (self.min_chars, self.max_chars, self.min_words, self.max_words)):
            raise ConfigError(
                "length needs at least one bound", where=where,
                hint='e.g. {"length": {"max_words": 50}}',
            )

    def evaluate(self, ctx: EvalContext) -> Reason:
        chars, words = len(ctx.output), len(ctx.output.split())
        checks = [
            (self.min_chars, chars >= (self.min_chars or 0), f"{chars} chars < {self.min_chars}"),
            (self.max_chars, chars <= (self.max_chars or 0), f"{chars} chars > {self.max_chars}"),
            (self.min_words, words >= (self.min_words or 0), f"{words} words < {self.min_words}"),
            (self.max_words, words <= (self.max_words or 0), f"{words} words > {self.max_words}"),
        ]
        failed = [msg for bound, ok, msg in checks if bound is not None and not ok]
        return Reason(not failed, "; ".join(failed) or None)


@dataclass
class MatchesBaseline(Evaluator):
    """Agreement with the baseline's own output, for prompts with no gold answers.

    With `labels`, compares the labels read from both outputs; with `numeric`, the last
    numbers; otherwise the normalised texts.
    """

    name = "matches_baseline"
    labels: list[str] | None = None
    numeric: bool = False
    case_sensitive: bool = False

    def evaluate(self, ctx: EvalContext) -> Reason:
        base = reference(ctx, "baseline", self.name)
        if self.labels:
            ours, _ = find_labels(ctx.output, self.labels)
            theirs, _ = find_labels(base, self.labels)
            ok = ours is not None and ours == theirs
            return Reason(ok, None if ok else f"candidate {ours!r}, baseline {theirs!r}", label=ours)
        if self.numeric:
            ours_n, theirs_n = last_number(ctx.output), last_number(base)
            ok = ours_n is not None and ours_n == theirs_n
            return Reason(ok, None if ok else f"candidate {ours_n}, baseline {theirs_n}")
        same = norm_text(ctx.output, case_sensitive=self.case_sensitive) == norm_text(
            base, case_sensitive=self.case_sensitive
        )
        return Reason(same, None if same else "output differs from the baseline's")


TEXT_EVALUATORS: tuple[type[Evaluator], ...] = (
    Exact, Label, Contains, Regex, Numeric, Length, MatchesBaseline,
)
