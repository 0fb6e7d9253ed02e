"""What every evaluator shares: the context it scores, what it may return, and option parsing.

An evaluator is a small dataclass with one `evaluate(ctx)` method (sync or async) returning a
bool, a float in [0, 1], or a `Reason` (a value with an explanation). Options come from the
config file as a dict (`{"label": {"labels": ["positive", "negative"]}}`) and are type-checked
here, so a typo surfaces as a ConfigError naming the option, not as a crash mid-run.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_type_hints

from pydantic import TypeAdapter, ValidationError

from trimloop.core.errors import ConfigError, UserError


@dataclass
class EvalContext:
    """One output to score, with everything an evaluator may compare it to."""

    output: str
    inputs: dict[str, Any] = field(default_factory=dict)
    expected: str | None = None
    baseline_output: str | None = None
    item_id: int | str | None = None
    gateway: Any = None  # the Gateway, for the judges
    ledger: Any = None


@dataclass(frozen=True)
class Reason:
    """A score with an explanation; `label` is the class an evaluator read from the output."""

    value: bool | float
    reason: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Score:
    """A normalised evaluator result: a number in [0, 1], a reason, and an optional label."""

    value: float
    reason: str | None = None
    label: str | None = None


class MissingReference(UserError):
    code = "missing_reference"


def normalise(result: Any, *, evaluator: str) -> Score:
    """Turn an evaluator's bool / float / Reason into a Score, refusing values outside [0, 1]."""
    reason = label = None
    if isinstance(result, Reason):
        result, reason, label = result.value, result.reason, result.label
    if isinstance(result, bool):
        return Score(1.0 if result else 0.0, reason, label)
    if isinstance(result, (int, float)) and math.isfinite(result) and 0.0 <= result <= 1.0:
        return Score(float(result), reason, label)
    raise TypeError(
        f"evaluator {evaluator!r} returned {result!r}; evaluators must return a bool, "
        "a float in [0, 1], or Reason(value, reason)"
    )


class Evaluator:
    """Base of every evaluator. Subclasses are dataclasses and set `name`.

    `positional` names the option a non-dict config value fills: `{"contains": "refund"}`.
    `needs_reference` is True when the evaluator compares against the expected answer.
    """

    name: ClassVar[str] = ""
    positional: ClassVar[str | None] = None

    def evaluate(self, ctx: EvalContext) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.evaluate)

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def check(self, where: str) -> None:
        """Semantic checks after types are known; raise ConfigError. Override when needed."""


def reference(ctx: EvalContext, against: str, evaluator: str) -> str:
    """The text to compare with: the expected answer or the baseline's output."""
    text = ctx.expected if against == "expected" else ctx.baseline_output
    if text is None:
        other = "baseline" if against == "expected" else "expected"
        raise MissingReference(
            f"evaluator {evaluator!r} needs the item's {against} output and it has none",
            where=f"dataset item {ctx.item_id}",
            hint=f"import a gold set with expected answers, or set against = \"{other}\" "
            "(or use matches_baseline) for prompts without gold answers",
        )
    return text


def build(cls: type[Evaluator], options: Any, *, where: str) -> Evaluator:
    """Construct `cls` from config options, with a ConfigError naming any bad option."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        if cls.positional is None:
            raise ConfigError(
                f"evaluator {cls.name!r} takes a table of options, not {options!r}",
                where=where,
                hint=f"write {{\"{cls.name}\": {{...}}}} with options: {', '.join(_fields(cls)) or 'none'}",
            )
        options = {cls.positional: options}
    known = _fields(cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for evaluator {cls.name!r}",
            where=where,
            hint=f"{cls.name} takes: {', '.join(known) or 'no options'}",
        )
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, value in options.items():
        try:
            values[name] = TypeAdapter(hints[name]).validate_python(value, strict=False)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise ConfigError(
                f"option {name!r} of evaluator {cls.name!r} is invalid: {problem} (got {value!r})",
                where=f"{where}.{name}",
                hint=f"expected {_type_name(hints[name])}",
            ) from None
    missing = [f for f, spec in known.items() if spec and f not in values]
    if missing:
        raise ConfigError(
            f"evaluator {cls.name!r} needs option(s) {', '.join(missing)}",
            where=where,
            hint=f"add them, e.g. {{\"{cls.name}\": {{\"{missing[0]}\": ...}}}}",
        )
    instance = cls(**values)
    instance.check(where)
    return instance


def _fields(cls: type[Evaluator]) -> dict[str, bool]:
    """Option names → whether they are required."""
    return {
        f.name: f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init
    }


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
