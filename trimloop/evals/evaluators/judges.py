"""LLM judges: `llm_judge` grades one output against a rubric; `pairwise_judge` compares the
candidate's output with the baseline's in both orders and counts only position-consistent verdicts.

Both call the judge model through the gateway in the evaluation context, so judge calls are
cached, priced and capped like every other call.
The bundled 135M/270M models make poor judges: use them to exercise the plumbing, and a capable
API model (`model = "openai/gpt-4o-mini"`, …) for judgments you rely on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from trimloop.core.errors import ConfigError, UserError
from trimloop.evals.evaluators.base import EvalContext, Evaluator, Reason, reference

_GRADE = (
    "You grade a response against a rubric.\n\nRubric: {rubric}\n\nInput:\n{inputs}\n\n"
    "Response:\n{output}\n\nGive a grade from 0 (fails the rubric) to {top} (fully meets it). "
    "Answer with the number only.\nGrade:"
)
_PAIR = (
    "You compare two responses to the same input.\n\nCriterion: {rubric}\n\nInput:\n{inputs}\n\n"
    "Response A:\n{a}\n\nResponse B:\n{b}\n\nWhich response is better by the criterion? "
    "Answer with A, B, or tie.\nAnswer:"
)
_VERDICT = re.compile(r"\b(A|B|tie|TIE|Tie|equal|Equal)\b")


def _inputs_text(inputs: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in inputs.items())


def _need_gateway(ctx: EvalContext, name: str) -> Any:
    if ctx.gateway is None:
        raise UserError(
            f"evaluator {name!r} calls a judge model but no gateway was given",
            where=f"dataset item {ctx.item_id}",
            hint="pass gateway= to the runner (tests give the Gateway a fake provider=)",
        )
    return ctx.gateway


async def _ask(ctx: EvalContext, model: str, style: str, prompt: str, params: dict[str, Any]) -> str:
    gateway = _need_gateway(ctx, "judge")
    if style == "chat":
        result = await gateway.call(
            model, messages=[{"role": "user", "content": prompt}], params=params, ledger=ctx.ledger
        )
    else:
        result = await gateway.call(model, text=prompt, params=params, ledger=ctx.ledger)
    return result.output


def parse_grade(reply: str, top: int) -> int | None:
    """The first whole number in 0..top in the judge's reply (None when there is none)."""
    for match in re.finditer(r"(?<![\d.])\d+(?![\d.])", reply):
        value = int(match.group())
        if 0 <= value <= top:
            return value
    return None


def parse_verdict(reply: str) -> str | None:
    """'A', 'B', 'tie' or None from the judge's reply."""
    match = _VERDICT.search(reply)
    if match is None:
        return None
    word = match.group(1)
    return word if word in ("A", "B") else "tie"


@dataclass
class LlmJudge(Evaluator):
    """A judge model grades the output against `rubric` from 0 to `scale`; score = grade/scale."""

    name = "llm_judge"
    model: str
    rubric: str
    scale: int = 10
    style: Literal["chat", "text"] = "chat"
    params: dict[str, Any] = field(default_factory=lambda: {"temperature": 0, "max_tokens": 16})

    def check(self, where: str) -> None:
        if self.scale < 1:
            raise ConfigError(f"scale must be ≥ 1, got {self.scale}", where=f"{where}.scale",
                              hint="use e.g. 5 or 10")
        if not self.rubric.strip():
            raise ConfigError("rubric is empty", where=f"{where}.rubric",
                              hint="say what a good response does, in a sentence or two")

    async def evaluate(self, ctx: EvalContext) -> Reason:
        prompt = _GRADE.format(rubric=self.rubric, inputs=_inputs_text(ctx.inputs),
                               output=ctx.output, top=self.scale)
        reply = await _ask(ctx, self.model, self.style, prompt, self.params)
        grade = parse_grade(reply, self.scale)
        if grade is None:
            return Reason(0.0, f"judge gave no grade in 0..{self.scale}: {reply[:80]!r}")
        return Reason(grade / self.scale, f"judge grade {grade}/{self.scale}")


@dataclass
class PairwiseJudge(Evaluator):
    """Candidate vs baseline, asked in both orders. Score 1 = candidate better, 0.5 = tie or
    position-inconsistent (the judge flipped with the order, so the verdict is not counted),
    0 = baseline better. The baseline compared with itself scores 0.5, so paired deltas work."""

    name = "pairwise_judge"
    model: str
    rubric: str = "Which response answers the input more correctly and helpfully?"
    style: Literal["chat", "text"] = "chat"
    params: dict[str, Any] = field(default_factory=lambda: {"temperature": 0, "max_tokens": 8})

    async def evaluate(self, ctx: EvalContext) -> Reason:
        base = reference(ctx, "baseline", self.name)
        if base.strip() == ctx.output.strip():
            return Reason(0.5, "same output as the baseline")
        inputs = _inputs_text(ctx.inputs)
        first = parse_verdict(await _ask(ctx, self.model, self.style, _PAIR.format(
            rubric=self.rubric, inputs=inputs, a=base, b=ctx.output), self.params))
        second = parse_verdict(await _ask(ctx, self.model, self.style, _PAIR.format(
            rubric=self.rubric, inputs=inputs, a=ctx.output, b=base), self.params))
        # Map each verdict to the winner: in the first order B is the candidate, in the second A.
        to_winner = lambda v, cand: None if v is None else "tie" if v == "tie" else (  # noqa: E731
            "candidate" if v == cand else "baseline")
        one, two = to_winner(first, "B"), to_winner(second, "A")
        if one is None or two is None or one != two:
            return Reason(0.5, f"position-inconsistent or unparsed ({first}, {second}): not counted")
        return Reason({"candidate": 1.0, "tie": 0.5, "baseline": 0.0}[one], f"both orders: {one}")


JUDGE_EVALUATORS: tuple[type[Evaluator], ...] = (LlmJudge, PairwiseJudge)
