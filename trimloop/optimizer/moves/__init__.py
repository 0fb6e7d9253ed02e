"""Moves: each `propose(candidate, *, context) -> list[Candidate]`, composable by lineage.

`retarget` (a cheaper model), `shorten` (fewer words, same rules and placeholders),
`prune_examples` (fewer few-shot examples) and `rewrite` (LLM-proposed instructions, DSPy).
"""

from __future__ import annotations

from trimloop.optimizer.moves.prune import PruneExamples
from trimloop.optimizer.moves.retarget import Retarget
from trimloop.optimizer.moves.shorten import Shorten

DETERMINISTIC = (Retarget, Shorten, PruneExamples)

__all__ = ["DETERMINISTIC", "PruneExamples", "Retarget", "Shorten"]
