"""Evaluators by name: the built-ins, plus any a package registers under the entry-point group
`trimloop.evaluators` (each entry point names an Evaluator subclass or a tuple of them).

Config: `{"label": {"labels": ["positive", "negative"]}, "contains": "refund"}` or a list of
names and one-key tables. `build_evaluators` turns either into named, validated evaluators.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from trimloop.core.errors import ConfigError
from trimloop.evals.evaluators.base import (
    EvalContext,
    Evaluator,
    MissingReference,
    Reason,
    Score,
    build,
    normalise,
)
from trimloop.evals.evaluators.judges import JUDGE_EVALUATORS
from trimloop.evals.evaluators.metrics import LabelMetrics, label_metrics
from trimloop.evals.evaluators.overlap import OVERLAP_EVALUATORS
from trimloop.evals.evaluators.structured import STRUCTURED_EVALUATORS
from trimloop.evals.evaluators.text import TEXT_EVALUATORS, find_labels, last_number

ENTRY_POINT_GROUP = "trimloop.evaluators"
BUILTIN_EVALUATORS: tuple[type[Evaluator], ...] = (
    TEXT_EVALUATORS + STRUCTURED_EVALUATORS + OVERLAP_EVALUATORS + JUDGE_EVALUATORS
)

_registry: dict[str, type[Evaluator]] | None = None


def registry() -> dict[str, type[Evaluator]]:
    """Every known evaluator class by name: built-ins first, then entry-point plugins."""
    global _registry
    if _registry is None:
        found = {cls.name: cls for cls in BUILTIN_EVALUATORS}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
            except Exception as exc:
                raise ConfigError(
                    f"evaluator plugin {ep.name!r} failed to load: {exc.__class__.__name__}: {exc}",
                    where=f"entry point {ep.value} (group {ENTRY_POINT_GROUP})",
                    hint="reinstall or uninstall the package that provides it",
                ) from None
            for cls in loaded if isinstance(loaded, (tuple, list)) else (loaded,):
                register(cls, into=found)
        _registry = found
    return _registry


def register(cls: type[Evaluator], *, into: dict[str, type[Evaluator]] | None = None) -> type[Evaluator]:
    """Add an evaluator class (usable as a decorator); a name already taken is refused."""
    target = registry() if into is None else into
    if not (isinstance(cls, type) and issubclass(cls, Evaluator) and cls.name):
        raise ConfigError(
            f"{cls!r} is not an Evaluator subclass with a name",
            where=f"evaluator registration ({ENTRY_POINT_GROUP})",
            hint="subclass trimloop.evals.evaluators.Evaluator as a dataclass and set `name`",
        )
    if cls.name in target and target[cls.name] is not cls:
        raise ConfigError(
            f"evaluator name {cls.name!r} is already taken by {target[cls.name].__qualname__}",
            where=f"evaluator registration ({ENTRY_POINT_GROUP})",
            hint="give the plugin's evaluator a distinct name",
        )
    target[cls.name] = cls
    return cls


@dataclass(frozen=True)
class NamedEvaluator:
    """An evaluator with the key its scores are stored under."""

    key: str
    evaluator: Evaluator


def build_evaluators(config: Any, *, where: str = "evaluators") -> list[NamedEvaluator]:
    """Validated evaluators from a `{name: options}` table or a list of names / one-key tables."""
    if isinstance(config, dict):
        pairs = list(config.items())
    elif isinstance(config, (list, tuple)):
        pairs = []
        for index, entry in enumerate(config):
            if isinstance(entry, str):
                pairs.append((entry, None))
            elif isinstance(entry, dict) and len(entry) == 1:
                pairs.append(next(iter(entry.items())))
            else:
                raise ConfigError(
                    f"evaluator entry {entry!r} is neither a name nor a one-key table",
                    where=f"{where}[{index}]",
                    hint='write "exact" or {"label": {"labels": [...]}}',
                )
    elif isinstance(config, str):
        pairs = [(config, None)]
    else:
        raise ConfigError(
            f"evaluators must be a table or a list, got {type(config).__name__}",
            where=where,
            hint='e.g. evaluators = {label = {labels = ["positive", "negative"]}}',
        )
    if not pairs:
        raise ConfigError("no evaluators configured", where=where,
                          hint='add at least one, e.g. evaluators = ["matches_baseline"]')
    known = registry()
    built: list[NamedEvaluator] = []
    for name, options in pairs:
        if name not in known:
            close = [k for k in known if k.startswith(name[:3])] or sorted(known)
            raise ConfigError(
                f"unknown evaluator {name!r}",
                where=f"{where}.{name}",
                hint=f"known evaluators: {', '.join(close)}; plugins register under {ENTRY_POINT_GROUP}",
            )
        if any(b.key == name for b in built):
            raise ConfigError(f"evaluator {name!r} is configured twice", where=f"{where}.{name}",
                              hint="keep one entry per evaluator name")
        built.append(NamedEvaluator(name, build(known[name], options, where=f"{where}.{name}")))
    return built


async def score_output(evaluators: list[NamedEvaluator], ctx: EvalContext) -> dict[str, Score]:
    """Run every evaluator on one output (awaiting the async ones)."""
    scores: dict[str, Score] = {}
    for named in evaluators:
        result = named.evaluator.evaluate(ctx)
        if named.evaluator.is_async:
            result = await result
        scores[named.key] = normalise(result, evaluator=named.key)
    return scores


__all__ = [
    "BUILTIN_EVALUATORS", "ENTRY_POINT_GROUP", "EvalContext", "Evaluator", "LabelMetrics",
    "MissingReference", "NamedEvaluator", "Reason", "Score", "build_evaluators", "find_labels",
    "label_metrics", "last_number", "register", "registry", "score_output",
]
