"""Moves: each one way to make variants, behind one signature, composable by lineage.

`retarget` (a cheaper model), `shorten` (fewer words, same rules and placeholders),
`prune_examples` (fewer few-shot examples), `trim_output` (fewer output tokens: a max_tokens cap,
answer-only, compact JSON, no chain of thought), `cache_layout` (static text first, Anthropic cache
breakpoints), `reasoning` (lower reasoning effort, verbosity or thinking budget; a model that does
not reason) and `rewrite` (LLM-proposed instructions, DSPy).
A repair (a run with `repair = true`) uses the moves that can raise quality instead:
`retarget` to any model of the candidate list (stronger ones too), `answer_format` (state the
allowed answers and the output shape, a stop sequence, chat ↔ completion) and `rewrite`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from trimloop.optimizer.moves.answer_format import AnswerFormat
from trimloop.optimizer.moves.cache_layout import CacheLayout
from trimloop.optimizer.moves.prune import PruneExamples
from trimloop.optimizer.moves.reasoning import Reasoning
from trimloop.optimizer.moves.retarget import Retarget
from trimloop.optimizer.moves.rewrite import Rewrite
from trimloop.optimizer.moves.shorten import Shorten
from trimloop.optimizer.moves.trim_output import TrimOutput
from trimloop.optimizer.spec import CandidateSpec, MoveContext


@runtime_checkable
class Move(Protocol):
    """`propose(candidate, *, context) -> list[CandidateSpec]`: variants of `candidate`, each one
    step longer in lineage. `composes`: also applied to other moves' proposals; `calls_model`: its
    proposals cost model calls (the search asks it once, on the baseline, after the free ones)."""

    name: str
    composes: bool
    calls_model: bool

    async def propose(self, candidate: CandidateSpec, *, context: MoveContext) -> list[CandidateSpec]: ...


MOVES: tuple[type[Move], ...] = (Retarget, Reasoning, Shorten, PruneExamples, TrimOutput, CacheLayout,
                                 Rewrite)  # in the order they propose
REPAIR_MOVES: tuple[type[Move], ...] = (Retarget, AnswerFormat, Rewrite)  # the moves that can raise quality

__all__ = ["MOVES", "REPAIR_MOVES", "AnswerFormat", "CacheLayout", "Move", "PruneExamples", "Reasoning", "Retarget",
           "Rewrite", "Shorten", "TrimOutput"]
