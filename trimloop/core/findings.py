"""A finding: one checked fact about a workspace or a prompt, at a level, with the fix.

`trimloop doctor` (api.doctor) reports its lines as findings, and so does a run's preflight
(optimizer.preflight) before it spends anything; both read the same shape, so the CLI, the API
and the UI show either the same way. Root causes come first in a list; `worst` decides the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from trimloop.core.redact import redact_urls

Level = Literal["ok", "warning", "problem"]
LEVELS: tuple[Level, ...] = ("ok", "warning", "problem")  # from best to worst


@dataclass(frozen=True)
class Finding:
    """`code` is a stable dotted key (`prices.unknown`) for machines and tests; `message` says
    what was found and where; `fix` what to do about it ("" when there is nothing to do);
    `data` the numbers behind it. URLs in the texts lose their credentials (core.redact)."""

    level: Level
    code: str
    message: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"finding level must be one of {', '.join(LEVELS)}, not {self.level!r}")
        object.__setattr__(self, "message", redact_urls(self.message))
        object.__setattr__(self, "fix", redact_urls(self.fix))


def ok(code: str, message: str, fix: str = "", **data: Any) -> Finding:
    return Finding("ok", code, message, fix, data)


def warning(code: str, message: str, fix: str = "", **data: Any) -> Finding:
    return Finding("warning", code, message, fix, data)


def problem(code: str, message: str, fix: str = "", **data: Any) -> Finding:
    return Finding("problem", code, message, fix, data)


def worst(findings: Iterable[Finding]) -> Level:
    """The worst level among `findings` ("ok" for none)."""
    return max((f.level for f in findings), key=LEVELS.index, default="ok")
