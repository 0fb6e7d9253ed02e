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
class CandidateSpec:
    """A variant plus its lineage (which moves made it, from which parent): what a Candidate row
    stores, as VersionSpec is what a PromptVersion row stores."""

    version: VersionSpec
    lineage: tuple[dict[str, Any], ...]
    parent_sha: str

    @property
    def sha(self) -> str:
        return self.version.sha

    @property
    def label(self) -> str:
        return " + ".join(step["move"] for step in self.lineage) or "baseline"

    def then(self, version: VersionSpec, move: str, detail: str) -> "CandidateSpec":
        return CandidateSpec(version, self.lineage + ({"move": move, "detail": detail},), self.parent_sha)


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


def start(version: VersionSpec) -> CandidateSpec:
    """The root of every lineage: the baseline itself."""
    return CandidateSpec(version, (), version.sha)
