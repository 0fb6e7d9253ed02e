"""Reference-overlap evaluators: rouge (rouge-score), bleu and chrf (sacrebleu), scaled to [0, 1].

rouge-score (which loads nltk) and sacrebleu are imported when an evaluator first needs them:
together they were 5 of the 11 s `trimloop worker` took to start on a loaded 2-core machine.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from trimloop.evals.evaluators.base import EvalContext, Evaluator, Reason, reference

Against = Literal["expected", "baseline"]


class UnicodeTokenizer:
    """rouge-score's default tokenizer drops every non-ASCII letter; this one keeps words in
    any script (so Japanese or accented text is not scored as empty), with optional stemming."""

    def __init__(self, use_stemmer: bool = False):
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        words = re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())
        if self._stemmer is None:
            return words
        return [self._stemmer.stem(w) if len(w) > 3 and w.isascii() else w for w in words]


@dataclass
class Rouge(Evaluator):
    """ROUGE F-measure of the output against the reference (rouge1, rouge2, rougeL, rougeLsum)."""

    name = "rouge"
    positional = "type"
    type: Literal["rouge1", "rouge2", "rougeL", "rougeLsum"] = "rougeL"
    stemmer: bool = True
    against: Against = "expected"

    def check(self, where: str) -> None:
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(
            [self.type], tokenizer=UnicodeTokenizer(self.stemmer)
        )

    def evaluate(self, ctx: EvalContext) -> Reason:
        ref = reference(ctx, self.against, self.name)
        scorer = getattr(self, "_scorer", None)
        if scorer is None:
            self.check(self.name)
            scorer = self._scorer
        score = scorer.score(ref, ctx.output)[self.type]
        return Reason(float(score.fmeasure), f"P={score.precision:.2f} R={score.recall:.2f}")


@dataclass
class Bleu(Evaluator):
    """Sentence BLEU (sacrebleu, exp smoothing) / 100."""

    name = "bleu"
    tokenize: Literal["13a", "intl", "char", "zh", "none"] = "13a"
    lowercase: bool = False
    against: Against = "expected"

    def evaluate(self, ctx: EvalContext) -> float:
        import sacrebleu

        ref = reference(ctx, self.against, self.name)
        result = sacrebleu.sentence_bleu(
            ctx.output, [ref], tokenize=self.tokenize, lowercase=self.lowercase
        )
        return min(1.0, max(0.0, result.score / 100.0))


@dataclass
class Chrf(Evaluator):
    """Sentence chrF (chrF++ with `word_order=2`) / 100."""

    name = "chrf"
    word_order: int = 0
    against: Against = "expected"

    def evaluate(self, ctx: EvalContext) -> float:
        import sacrebleu

        ref = reference(ctx, self.against, self.name)
        result = sacrebleu.sentence_chrf(ctx.output, [ref], word_order=self.word_order)
        return min(1.0, max(0.0, result.score / 100.0))


OVERLAP_EVALUATORS: tuple[type[Evaluator], ...] = (Rouge, Bleu, Chrf)
