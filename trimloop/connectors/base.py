"""The connector interface: what a prompt store or log source offers trimloop.

A connector reads prompt versions (with their labels) and call logs, and writes an approved
version back under a label. It yields plain records; `connectors.sync` turns them into store rows.
Bad records are yielded as `Problem`s (with file:line, record id or URL) so the good ones around
them are kept. Log streams yield `Checkpoint`s: a cursor that is safe to resume from, and
`Looked`s: where they looked (an experiment, a project) and what they found there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from trimloop.core.egress import Egress
from trimloop.core.errors import ConfigError, UserError
from trimloop.core.redact import redact_urls
from trimloop.core.templates import Template
from trimloop.core.usage import TokenUsage


@dataclass
class PromptItem:
    """One version of one prompt as the store holds it."""

    name: str
    template: Template
    model: str
    params: dict[str, Any]
    external_version: str
    labels: list[str] = field(default_factory=list)
    external_id: str | None = None
    description: str | None = None
    where: str | None = None


@dataclass(slots=True)
class LogItem:
    """One production call. `prompt`/`version` name what produced it, if the source knows.

    `rendered` (the messages or text actually sent) lets sync recover the prompt version and the
    input variables by matching it against known templates when the source does not say.
    """

    external_id: str
    called_at: datetime
    prompt: str | None = None
    version: str | None = None
    version_sha: str | None = None
    inputs: dict[str, Any] | None = None
    rendered: list[dict[str, Any]] | str | None = None
    output: str | None = None
    model: str | None = None
    input_tokens: int | None = None  # every prompt token, cached ones included (core.usage)
    output_tokens: int | None = None  # every completion token, reasoning included
    cost: float | None = None
    latency_s: float | None = None
    feedback: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    where: str | None = None
    sample_rate: float | None = None  # the share of calls the source logged; None: every call (or unknown)
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    batch: bool = False
    # the reader knows that no string holds a NUL and no number is inf or nan (a JSON line with no
    # \u0000 escape: JSON has neither a raw NUL nor a non-finite number); sync then skips that walk
    plain_text: bool = field(default=False, compare=False)

    def set_usage(self, usage: TokenUsage) -> "LogItem":
        """Take the token classes of `usage` (what the source reported; None leaves a field as it is)."""
        for attr, value in (("input_tokens", usage.input), ("output_tokens", usage.output),
                            ("cached_input_tokens", usage.cached), ("cache_write_tokens", usage.cache_write),
                            ("reasoning_tokens", usage.reasoning)):
            if value is not None:
                setattr(self, attr, value)
        self.batch = self.batch or usage.batch
        return self


@dataclass
class Problem:
    """A record that was skipped: where it is, what is wrong, how to fix it."""

    where: str
    message: str
    reason: str = "invalid"  # a short code used to count problems in the report
    hint: str | None = None
    stream: str = "logs"
    prompt: str | None = None  # the prompt it belongs to, when known (its labels stay untouched)

    def __post_init__(self) -> None:  # a connector's URL may carry credentials (core.redact)
        self.where, self.message = redact_urls(self.where), redact_urls(self.message)
        self.hint = None if self.hint is None else redact_urls(self.hint)

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


@dataclass
class Checkpoint:
    """Everything yielded before this point is covered by `cursor`."""

    cursor: str


@dataclass
class Looked:
    """One place a log stream read (an MLflow experiment, a Phoenix project) and how many records
    it read there in this sync. `notice` says why a place that was asked for gave nothing and how
    to fix it (traces found elsewhere, with the config line to add); it skipped no record."""

    where: str
    read: int = 0
    notice: Problem | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.read} read"


@dataclass
class WriteResult:
    """What a write-back produced in the store."""

    prompt: str
    external_version: str
    label: str
    created: bool  # False when an identical version already existed and only the label moved
    external_id: str | None = None
    where: str | None = None


class Connector(ABC):
    """Base of every connector. Subclasses set `type`, `Options`, and the read/write methods."""

    type: ClassVar[str] = ""
    read_only: ClassVar[bool] = False

    class Options(BaseModel):
        model_config = {"extra": "forbid"}

    def __init__(self, *, name: str, options: dict[str, Any] | None = None, egress: Egress | None = None) -> None:
        """`egress` is the `allowed_hosts` list in force (default: loopback only). Every option
        named `url` or `*_url` must point inside it; a subclass that makes requests passes it on
        to its HTTP client (connectors.http.JsonClient checks every request)."""
        self.name = name
        self.egress = egress if egress is not None else _egress_in_force.get() or Egress.default()
        self.options = parse_options(self.Options, options or {}, name=name)
        for key, value in self.options:
            if (key == "url" or key.endswith("_url")) and isinstance(value, str):
                self.egress.check(value, who=f"connector {name!r} ({self.type or type(self).__name__})",
                                  where=f"[connectors.{name}] {key}")

    @abstractmethod
    def read_prompts(self) -> Iterator[PromptItem | Problem]:
        """Every prompt version in the store, with its current labels."""

    @abstractmethod
    def read_logs(self, *, cursor: str | None) -> Iterator[LogItem | Problem | Checkpoint]:
        """Calls logged after `cursor` (None: from the start); ends with a Checkpoint."""

    def write_version(
        self,
        *,
        prompt: str,
        template: Template,
        model: str,
        params: dict[str, Any],
        label: str,
        description: str | None = None,
    ) -> WriteResult:
        """Store a new version of `prompt` and point `label` at it."""
        raise self.read_only_error("write a version")

    def move_label(self, *, prompt: str, external_version: str, label: str) -> None:
        """Point `label` at an existing version (promote, roll back)."""
        raise self.read_only_error("move a label")

    def close(self) -> None:
        """Release clients and files."""

    def __enter__(self) -> "Connector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_only_error(self, action: str) -> UserError:
        return UserError(
            f"the {self.type} connector is read-only: it cannot {action}",
            where=f"[connectors.{self.name}]",
            hint=f"{self.type} sources have no prompt store; deploy through the connector that "
            "holds the prompt (files, mlflow, phoenix, langfuse)",
        )


_egress_in_force: ContextVar[Egress | None] = ContextVar("trimloop_connector_egress", default=None)


@contextmanager
def egress_in_force(egress: Egress) -> Iterator[None]:
    """While building a connector whose own __init__ does not pass `egress` on (a plugin written
    before it existed), the base class takes the list in force from here."""
    token = _egress_in_force.set(egress)
    try:
        yield
    finally:
        _egress_in_force.reset(token)


def parse_options(model: type[BaseModel], options: dict[str, Any], *, name: str) -> Any:
    """Validate a connector's options, naming the bad key in `[connectors.NAME]`."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        known = ", ".join(model.model_fields) or "none"
        raise ConfigError(
            f"invalid connector options: {problems}",
            where=f"[connectors.{name}]",
            hint=f"options of this connector: {known}; secrets come from environment variables",
        ) from None
