"""What the optimizer works on: a version's content (template, model, params) and candidates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trimloop.core.catalog import ResolvedModel
from trimloop.core.identity import version_identity
from trimloop.core.templates import Template


@dataclass(frozen=True)
class VersionSpec:
    """The content of a PromptVersion, independent of any store row."""

    template: Template
    model: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def sha(self) -> str:
        return version_identity(template=self.template.dump(), model=self.model, params=self.params)

    def replace(self, **changes: Any) -> "VersionSpec":
        values = {"template": self.template, "model": self.model, "params": self.params} | changes
        return VersionSpec(**values)

    @classmethod
    def of(cls, row: Any) -> "VersionSpec":
        """From a PromptVersion row."""
        return cls(Template.model_validate(row.template), row.model, dict(row.params or {}))


@dataclass(frozen=True)
class Outlook:
    """What a move expects a call of its candidate to produce, per call on average, where it differs
    from the baseline's logged outputs (a max_tokens cap, a lower reasoning effort). Only for
    ranking candidates before the race; savings are priced from the tokens the calls really use."""

    output_tokens: float | None = None  # every completion token, reasoning included
    reasoning_tokens: float | None = None  # part of output_tokens


@dataclass(frozen=True)
class CandidateSpec:
    """A variant plus its lineage (which moves made it, from which parent): what a Candidate row
    stores, as VersionSpec is what a PromptVersion row stores."""

    version: VersionSpec
    lineage: tuple[dict[str, Any], ...]
    parent_sha: str
    outlook: Outlook | None = None  # the last move's expectation of output / reasoning tokens

    @property
    def sha(self) -> str:
        return self.version.sha

    @property
    def label(self) -> str:
        return " + ".join(step["move"] for step in self.lineage) or "baseline"

    def then(self, version: VersionSpec, move: str, detail: str, *, outlook: Outlook | None = None,
             **facts: Any) -> "CandidateSpec":
        """One step further; `facts` are kept in the lineage step beside its plain-words `detail`."""
        step = {"move": move, "detail": detail} | facts
        return CandidateSpec(version, self.lineage + (step,), self.parent_sha, outlook or self.outlook)

    @property
    def same_text(self) -> bool:
        """Every step only added provider cache breakpoints: the model receives the baseline's very text."""
        return bool(self.lineage) and all(step.get("same_text") for step in self.lineage)


@dataclass
class MoveContext:
    """What moves may look at: candidate models and prices, a proposer, seed, sample inputs."""

    models: list[str]
    resolve: Callable[[str], ResolvedModel]
    seed: int = 0
    gateway: Any = None
    proposer_model: str | None = None
    ledger: Any = None
    sample_inputs: list[dict[str, Any]] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)  # search-split EvalItems the rewrite's GEPA may run on
    evaluators: list[Any] = field(default_factory=list)  # the run's NamedEvaluators: GEPA's metric
    budget_calls: int | None = None  # calls the moves that call a model may spend (a share of the search's)
    concurrency: int = 4
    emit: Callable[[str, dict[str, Any]], None] | None = None  # the run's event sink, for moves that report
    migrate: bool = False  # the baseline's model retires: retarget to dearer models too
    repair: bool = False  # a repair: quality first, dearer models too (optimizer.repair)
    answers: list[str] = field(default_factory=list)  # the allowed answers (labels), for answer_format
    examples: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (inputs, gold answer) from the search split
    outputs: list[OutputFact] = field(default_factory=list)  # the baseline's outputs on the search items
    answer: Answer | None = None  # what every evaluator reads of an output (None: the whole text)
    cache: Any = None  # optimizer.caching.CacheModel learnt from the baseline's logs (None: no cache)


@dataclass(frozen=True)
class Answer:
    """The part of an output every evaluator reads: a label (of `labels`), the last number, or the
    first JSON value; the rest (chatter, reasoning) no evaluator sees."""

    kind: str  # label | number | json
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputFact:
    """One baseline output as the moves that trim outputs see it: its text, tokens, and whether it
    scored well on every evaluator."""

    text: str
    output_tokens: int
    reasoning_tokens: int = 0
    good: bool = False


def start(version: VersionSpec) -> CandidateSpec:
    """The root of every lineage: the baseline itself."""
    return CandidateSpec(version, (), version.sha)
