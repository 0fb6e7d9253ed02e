"""SQLModel tables for the whole vocabulary (see DESIGN.md).

JSON columns hold structured values (templates, params, scores, evidence); everything that is
queried or joined on is a real column with an index. Times are timezone-aware UTC.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint, and_, case, false, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import AutoString, Field, SQLModel

from trimloop.core.evidence import CandidateScores, Evidence, HealthReport, LatencyClaim, Record, RunResults
from trimloop.core.status import (
    CandidateStatus,
    HealthVerdict,
    RunStatus,
    SuggestionKind,
    SuggestionStatus,
    WatchVerdict,
)
from trimloop.core.usage import TokenUsage


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """A stored time with its zone: SQLite hands times back without one, and they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _json(**kw: Any) -> Any:
    return Field(sa_column=Column(JSON, nullable=kw.pop("nullable", False)), **kw)


class TypedJSON(TypeDecorator[Any]):
    """A JSON column holding one pydantic record: validated on write, loaded as the record.

    Accepts the record or a plain dict (validated); older rows load through `Record.load`."""

    impl = JSON
    cache_ok = True

    def __init__(self, model: type[Record]):
        super().__init__()
        self.model = model

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        record = value if isinstance(value, self.model) else self.model.model_validate(value)
        stored = record.model_dump(mode="json", exclude_none=True)
        if not stored.get("unreadable"):
            stored.pop("unreadable", None)
        return stored

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else self.model.load(value)


class StatusText(TypeDecorator[Any]):
    """A status column: text in the database (no native enum type to migrate), the StrEnum in Python."""

    impl = AutoString
    cache_ok = True

    def __init__(self, enum: type[StrEnum]):
        super().__init__(length=20)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        # plain text passes as is: a filter on an unknown status matches nothing (not an error)
        return value.value if isinstance(value, StrEnum) else value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        try:
            return None if value is None else self.enum(value)
        except ValueError:  # a status this version does not know: keep the text
            return value


def _status(enum: type[StrEnum], default: StrEnum) -> Any:
    return Field(default=default, sa_column=Column(StatusText(enum), nullable=False, index=True))


def _typed(model: type[Record]) -> Any:
    return Field(sa_column=Column(TypedJSON(model), nullable=False), default_factory=model)


class _Typed:
    """Assigning a dict to a typed JSON attribute validates it at once (a bad value fails where it
    is set, not at flush), so the attribute holds the record before and after a reload."""

    __typed__: dict[str, type[Record]] = {}

    def __setattr__(self, name: str, value: Any) -> None:
        model = self.__typed__.get(name)
        if model is not None and value is not None and not isinstance(value, model):
            value = model.model_validate(value)
        super().__setattr__(name, value)


def _text(**kw: Any) -> Any:
    return Field(sa_column=Column(Text, nullable=kw.pop("nullable", True)), **kw)


class Prompt(SQLModel, table=True):
    """A named LLM call configuration in a team's store."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    connector: str = Field(max_length=100)
    external_id: str | None = Field(default=None, max_length=400)
    description: str | None = _text()
    config: dict[str, Any] = _json(default_factory=dict)  # evaluators, margin, budgets
    created_at: datetime = Field(default_factory=utcnow)


class PromptVersion(SQLModel, table=True):
    """Immutable template + model + params. `sha` = sha256 of their canonical JSON."""

    __table_args__ = (UniqueConstraint("prompt_id", "sha"),)

    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    sha: str = Field(index=True, max_length=64)
    template: dict[str, Any] = _json()
    model: str = Field(max_length=200)
    params: dict[str, Any] = _json(default_factory=dict)
    connector: str = Field(max_length=100)
    external_id: str | None = Field(default=None, max_length=400)
    external_version: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class PromptLabel(SQLModel, table=True):
    """A label (`production`, `staging`) of a prompt and the one version it sits on. Moved only
    through `core.store.move_label`; the production version is `core.store.production_version_id`."""

    __table_args__ = (UniqueConstraint("prompt_id", "label"),)

    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    label: str = Field(max_length=200)
    version_id: int = Field(foreign_key="promptversion.id", index=True)
    moved_at: datetime = Field(default_factory=utcnow)


# Bounds on one call's numbers. Real calls cost cents and take seconds; a value past these is a unit
# mix-up or garbage, and one Infinity (or two 1e308s) makes every sum over it infinite or overflow.
# Sync refuses records past them; reports leave out any stored before that check existed.
MAX_COST_PER_CALL = 1_000.0  # dollars
MAX_LATENCY_S = 86_400.0  # one day
MAX_TOKENS = 2**31 - 1  # the token columns are 32-bit integers (PostgreSQL INTEGER)


def record_key(connector: str, external_id: str) -> int:
    """A record's identity as a signed 64-bit integer: LogRecord.key (unique) and LogSeen.key."""
    digest = hashlib.blake2b(f"{connector}\x00{external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _key_default(context: Any) -> int:
    """LogRecord.key for rows inserted without one (ORM adds, Core inserts in tests and seeds)."""
    row = context.get_current_parameters()
    return record_key(row["connector"], row["external_id"])


UNVERSIONED = "version_id IS NULL"  # ix_logrecord_unversioned's condition (migration 0018)


class LogRecord(SQLModel, table=True):
    """One production call. Idempotent on (connector, external_id), through `key`, its 64-bit hash."""

    __table_args__ = (
        # 19 B a record on SQLite where the text index over OTLP's 49-character trace:span ids took 95 (migration 0019)
        Index("ux_logrecord_key", "key", unique=True),
        # records that named no version, by prompt (their reservoir): a record with a version is
        # found through ix_logrecord_version_time, so this index holds only the few without one
        Index("ix_logrecord_unversioned", "prompt_id", "called_at", sqlite_where=text(UNVERSIONED),
              postgresql_where=text(UNVERSIONED)),
        # reports read the traffic aggregates (migration 0017 slimmed these back from covering indexes);
        # a version's records (reservoir, watch), with their reservoir keys: a trim reads this alone (0020)
        # no index by time alone (0021): the sweep and a window's part-days read time ranges here after
        # a version id, or after NULL (traffic.versions_of)
        Index("ix_logrecord_version_time", "version_id", "called_at", "sample_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    connector: str = Field(max_length=100)
    external_id: str = Field(max_length=400)
    key: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=False, default=_key_default))
    prompt_id: int | None = Field(default=None, foreign_key="prompt.id")
    version_id: int | None = Field(default=None, foreign_key="promptversion.id")  # ix_logrecord_version_time
    inputs: dict[str, Any] = _json(default_factory=dict)
    output: str | None = _text()
    model: str | None = Field(default=None, max_length=200)
    input_tokens: int | None = None  # every prompt token, cached and written ones included
    output_tokens: int | None = None  # every completion token, reasoning included
    cached_input_tokens: int | None = None  # read from the provider's prompt cache (part of input_tokens)
    cache_write_tokens: int | None = None  # written to it (part of input_tokens)
    reasoning_tokens: int | None = None  # part of output_tokens
    batch: bool = Field(default=False, sa_column_kwargs={"server_default": false()})  # billed at the batch price
    cost: float | None = None
    latency_s: float | None = None
    called_at: datetime = Field(default_factory=utcnow)
    feedback: list[dict[str, Any]] = _json(default_factory=list)  # {name, value, source}
    meta: dict[str, Any] = _json(default_factory=dict)
    # the share of calls the source logged (0.01: one in a hundred); NULL: every call. A record
    # stands for 1 / sample_rate calls in calls per day, spend and savings.
    sample_rate: float | None = None
    # the record's place in its version's daily reservoir (core.reservoir): the records with the
    # lowest keys are kept; NULL for records stored before migration 0010 (they sort last)
    sample_key: float | None = None

    @property
    def usage(self) -> TokenUsage:
        return TokenUsage(self.input_tokens, self.output_tokens, self.cached_input_tokens, self.cache_write_tokens,
                          self.reasoning_tokens, bool(self.batch))

    @classmethod
    def counted_cost(cls) -> Any:
        """`cost` for sums and means: NULL when out of bounds (Infinity, NaN, past MAX_COST_PER_CALL),
        so no sum over the store can overflow or turn infinite."""
        column = cls.__table__.c.cost  # type: ignore[attr-defined]
        return case((column.between(0, MAX_COST_PER_CALL), column), else_=None)

    @classmethod
    def weight(cls) -> Any:
        """The calls one record stands for: 1 / sample_rate (1 when unsampled or out of (0, 1])."""
        rate = cls.__table__.c.sample_rate  # type: ignore[attr-defined]
        return case((and_(rate > 0, rate <= 1), 1.0 / rate), else_=1.0)

    @classmethod
    def weighted_cost(cls) -> Any:
        """`counted_cost` × `weight`: the spend a record stands for (NULL where the cost is)."""
        return cls.counted_cost() * cls.weight()

    @classmethod
    def costed_weight(cls) -> Any:
        """`weight` where `counted_cost` is known, else NULL: the denominator of a weighted mean cost."""
        column = cls.__table__.c.cost  # type: ignore[attr-defined]
        return case((column.between(0, MAX_COST_PER_CALL), cls.weight()), else_=None)


class TrafficAggregate(SQLModel, table=True):
    """Every ingested call's numbers, summed per prompt version × model × day (core.traffic): what
    reports, dashboards, due logic and savings read. Kept when full records are dropped (reservoir,
    retention): `records` = the records still stored for the group + `dropped`. Sums of calls,
    tokens and spend weigh each record by the calls it stands for (1 / sample_rate)."""

    __table_args__ = (UniqueConstraint("day", "prompt_id", "version_id", "model"),
                      Index("ix_trafficaggregate_version_day", "version_id", "day"),
                      # the reports' roll-ups read this index alone, not the rows (each ~1 KB of sketch)
                      Index("ix_trafficaggregate_report", "day", "prompt_id", "model", "version_id", "records",
                            "calls", "spend", "costed_calls", "cost_n", "cost_sum", "cost_sq"))

    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(index=True)
    prompt_id: int = 0  # 0: no prompt (no foreign key, so 0 can stand for none in the unique key)
    version_id: int = 0  # 0: the record named no version
    model: str = Field(default="", max_length=200)  # "": the record named no model
    records: int = 0  # records ingested (stored or dropped)
    calls: float = 0.0  # Σ 1 / sample_rate
    input_tokens: float = 0.0  # each token class: Σ tokens × 1 / sample_rate
    output_tokens: float = 0.0
    cached_input_tokens: float = 0.0
    cache_write_tokens: float = 0.0
    reasoning_tokens: float = 0.0
    spend: float = 0.0  # Σ counted cost × 1 / sample_rate
    costed_calls: float = 0.0  # Σ 1 / sample_rate over records with a counted cost
    cost_n: int = 0  # records with a counted cost, and their costs' sum and sum of squares (intervals)
    cost_sum: float = 0.0
    cost_sq: float = 0.0
    errors: float = 0.0  # calls that failed (no output, or an error in the metadata), weighted
    feedback: dict[str, Any] = _json(default_factory=dict)  # name → value → records
    latency_sketch: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))  # DDSketch
    latency_min: float | None = None
    latency_max: float | None = None
    dropped: int = 0  # records of this group deleted by the reservoir or the retention sweep
    dropped_calls: float = 0.0  # the calls they stood for
    updated_at: datetime = Field(default_factory=utcnow)


class LogSeen(SQLModel, table=True):
    """Every ingested record's identity, (day, 64-bit hash of connector and external id), kept while
    the record might be sent again (retention_days): a record the reservoir dropped is still known,
    so sending it again adds nothing to the aggregates."""

    __table_args__ = ({"sqlite_with_rowid": False},)

    day: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})  # days since 1970-01-01
    key: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))


class ReservoirDay(SQLModel, table=True):
    """One version's reservoir of full records for one day (core.reservoir): how many are stored,
    and the highest sample key among them once it is full (a new record above it is dropped)."""

    __table_args__ = (UniqueConstraint("prompt_id", "version_id", "day"),)

    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = 0
    version_id: int = 0  # 0: records that named no version (one reservoir per prompt)
    day: date = Field(index=True)
    kept: int = 0
    threshold: float | None = None  # set once the reservoir is full


class ConnectorCursor(SQLModel, table=True):
    """Where a connector's last sync stopped, per stream (prompts, logs)."""

    __table_args__ = (UniqueConstraint("connector", "stream"),)

    id: int | None = Field(default=None, primary_key=True)
    connector: str = Field(max_length=100)
    stream: str = Field(max_length=50)
    cursor: str | None = _text()
    updated_at: datetime = Field(default_factory=utcnow)


class Dataset(SQLModel, table=True):
    """Frozen items for one prompt, split into search and holdout parts."""

    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    version_id: int | None = Field(default=None, foreign_key="promptversion.id")
    name: str = Field(max_length=200)
    source: str = Field(max_length=20)  # logs | import
    content_hash: str = Field(index=True, unique=True, max_length=64)
    seed: int = 0
    config: dict[str, Any] = _json(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class DatasetItem(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("dataset_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    position: int
    split: str = Field(max_length=10)  # search | holdout
    inputs: dict[str, Any] = _json(default_factory=dict)
    expected: str | None = _text()
    baseline_output: str | None = _text()
    feedback: list[dict[str, Any]] = _json(default_factory=list)
    log_id: int | None = Field(default=None, foreign_key="logrecord.id", index=True)  # never dropped (reservoir)


class OptimizationRun(_Typed, SQLModel, table=True):
    """One search for one prompt: config, budget, status, spend, results."""

    __typed__ = {"results": RunResults}

    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    status: RunStatus = _status(RunStatus, RunStatus.queued)
    config: dict[str, Any] = _json(default_factory=dict)
    budget_calls: int | None = None
    budget_dollars: float | None = None
    calls_made: int = 0
    spent_dollars: float = 0.0
    results: RunResults = _typed(RunResults)
    error: str | None = _text()
    worker: str | None = Field(default=None, max_length=200)
    heartbeat_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunEvent(SQLModel, table=True):
    """The timeline of a run (candidate proposed, eliminated, certified …), for the event stream."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="optimizationrun.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=50)
    data: dict[str, Any] = _json(default_factory=dict)


class Candidate(_Typed, SQLModel, table=True):
    """A variant PromptVersion plus its lineage."""

    __typed__ = {"scores": CandidateScores}

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="optimizationrun.id", index=True)
    version_id: int = Field(foreign_key="promptversion.id")
    parent_version_id: int | None = Field(default=None, foreign_key="promptversion.id")
    moves: list[dict[str, Any]] = _json(default_factory=list)
    status: CandidateStatus = Field(default=CandidateStatus.racing,
                                    sa_column=Column(StatusText(CandidateStatus), nullable=False))
    scores: CandidateScores = _typed(CandidateScores)
    cost_per_call: float | None = None
    latency_p50_s: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class EvalRun(SQLModel, table=True):
    """One version evaluated on a set of items."""

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="promptversion.id", index=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    run_id: int | None = Field(default=None, foreign_key="optimizationrun.id")
    split: str = Field(max_length=10)
    samples: int = 1
    status: str = Field(default="running", max_length=20)
    summary: dict[str, Any] = _json(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class EvalResult(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("eval_run_id", "item_id", "sample"),)

    id: int | None = Field(default=None, primary_key=True)
    eval_run_id: int = Field(foreign_key="evalrun.id", index=True)
    item_id: int = Field(foreign_key="datasetitem.id")
    sample: int = 0
    output: str | None = _text()
    scores: dict[str, Any] = _json(default_factory=dict)
    reasons: dict[str, Any] = _json(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    ttft_s: float | None = None  # time to first token, on a streamed call (None: not streamed, or a cache hit)
    cached: bool = False
    error: str | None = _text()


class Suggestion(_Typed, SQLModel, table=True):
    """A certified candidate awaiting a decision, with all its evidence."""

    __typed__ = {"evidence": Evidence}

    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    run_id: int | None = Field(default=None, foreign_key="optimizationrun.id")
    candidate_id: int | None = Field(default=None, foreign_key="candidate.id")
    baseline_version_id: int = Field(foreign_key="promptversion.id")
    candidate_version_id: int = Field(foreign_key="promptversion.id")
    candidate_sha: str = Field(index=True, max_length=64)
    status: SuggestionStatus = _status(SuggestionStatus, SuggestionStatus.pending)
    evidence: Evidence = _typed(Evidence)
    baseline_cost_per_call: float | None = None
    candidate_cost_per_call: float | None = None
    baseline_latency_p50_s: float | None = None
    candidate_latency_p50_s: float | None = None
    projected_monthly_savings: float | None = None
    savings_low: float | None = None
    savings_high: float | None = None
    optimization_spend: float = 0.0
    payback_days: float | None = None
    # the day the baseline's model retires, on a suggestion that migrates off it: the queue sorts by it
    retires_on: date | None = Field(default=None, index=True)
    # cost (cheaper, quality holds) or repair (better, certified by the superiority test): the queue marks it
    kind: SuggestionKind = Field(default=SuggestionKind.cost, sa_column=Column(
        StatusText(SuggestionKind), nullable=False, index=True, server_default=SuggestionKind.cost.value))
    reason: str | None = _text()
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None

    # Read-only views of the evidence, for the API, the UI, the CLI and webhooks alike.
    @property
    def objective(self) -> str:
        """What it serves: "cost", "latency p95", "cost (p95 ≤ 0.8 s)", "repair"."""
        return self.evidence.objective()

    @property
    def claim(self) -> str:
        """The suggestion in one line: "p95 1.9 s → 1.1 s, −42 %, cost +3 %, label holds (margin 0.02, n 240)"."""
        return self.evidence.cut_line(self.baseline_cost_per_call, self.candidate_cost_per_call)

    @property
    def latency(self) -> LatencyClaim | None:
        """The latency test on fresh paired calls (control vs candidate), when the run measured latency."""
        return self.evidence.latency


class PromptHealth(_Typed, SQLModel, table=True):
    """A prompt's last health verdict (evals.health) and the report behind it, one row per prompt.

    `verdict` changes only through a conditional update, so when several workers check at once
    exactly one of them sees the change (and sends the `prompt.unhealthy` notification)."""

    __typed__ = {"report": HealthReport}

    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", unique=True, index=True)
    verdict: HealthVerdict = _status(HealthVerdict, HealthVerdict.unknown)
    report: HealthReport = _typed(HealthReport)
    checked_at: datetime = Field(default_factory=utcnow)
    changed_at: datetime = Field(default_factory=utcnow)


class Review(SQLModel, table=True):
    """A person's decision on a suggestion."""

    id: int | None = Field(default=None, primary_key=True)
    suggestion_id: int = Field(foreign_key="suggestion.id", index=True)
    reviewer: str = Field(max_length=200)
    decision: str = Field(max_length=20)  # approved | rejected
    reason: str | None = _text()
    created_at: datetime = Field(default_factory=utcnow)


class Deployment(SQLModel, table=True):
    """The result of writing a version back through a connector."""

    id: int | None = Field(default=None, primary_key=True)
    suggestion_id: int = Field(foreign_key="suggestion.id", index=True)
    connector: str = Field(max_length=100)
    label: str = Field(max_length=50)
    action: str = Field(max_length=20)  # deploy | promote | rollback
    external_version: str | None = Field(default=None, max_length=200)
    status: str = Field(default="done", max_length=20)
    actor: str = Field(max_length=200)
    error: str | None = _text()
    created_at: datetime = Field(default_factory=utcnow)


class Watch(SQLModel, table=True):
    """The post-deploy watch of one deployed suggestion: its version's live signals against the
    version it replaced, checked after every sync (api/watch.py), with the numbers of the last check."""

    id: int | None = Field(default=None, primary_key=True)
    suggestion_id: int = Field(foreign_key="suggestion.id", unique=True, index=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    old_version_id: int = Field(foreign_key="promptversion.id")
    new_version_id: int = Field(foreign_key="promptversion.id")
    started_at: datetime  # when the new version could take traffic (its deploy to staging)
    verdict: WatchVerdict = _status(WatchVerdict, WatchVerdict.inconclusive)
    checks: list[dict[str, Any]] = _json(default_factory=list)  # one SignalCheck per signal, last check
    baseline_window: str | None = Field(default=None, max_length=20)  # concurrent | pre_deploy
    n_new: int = 0
    n_old: int = 0
    shadow_items: int = 0
    shadow_cost: float = 0.0
    looks: int = 0  # how many times it was checked
    history: list[dict[str, Any]] = _json(default_factory=list)  # {at, verdict, n_new, n_old}, newest last
    action: str | None = Field(default=None, max_length=20)  # alerted | rolled_back | promoted | failed
    action_at: datetime | None = None
    note: str | None = _text()
    checked_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ShadowScore(SQLModel, table=True):
    """One live input of the new version also run through the old version (paired shadow scoring):
    both versions' scores on the same evaluators. At most once per (watch, log)."""

    __table_args__ = (UniqueConstraint("watch_id", "log_id"),)

    id: int | None = Field(default=None, primary_key=True)
    watch_id: int = Field(foreign_key="watch.id", index=True)
    log_id: int = Field(foreign_key="logrecord.id", index=True)  # the sweep keeps records scored here
    new_scores: dict[str, Any] = _json(default_factory=dict)
    old_scores: dict[str, Any] = _json(default_factory=dict)
    old_output: str | None = _text()
    cost: float = 0.0
    error: str | None = _text()
    created_at: datetime = Field(default_factory=utcnow, index=True)


class AuditEvent(SQLModel, table=True):
    """Who did what, when, before and after."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100)
    object_type: str = Field(max_length=50)
    object_id: str | None = Field(default=None, max_length=100)
    before: dict[str, Any] | None = _json(default=None, nullable=True)
    after: dict[str, Any] | None = _json(default=None, nullable=True)


class Notification(SQLModel, table=True):
    """A notification that must go out once (`model.retiring` at 60, 30 and 7 days): its row is
    written, under a unique key, before it is sent, so two workers never send it twice. A delivery
    that failed is sent again by a later pass to the webhooks that did not take it (`failed_hooks`),
    claimed by a conditional update on `attempts`."""

    id: int | None = Field(default=None, primary_key=True)
    event: str = Field(max_length=50)
    key: str = Field(unique=True, max_length=400)  # e.g. model.retiring:prompt 3:gpt-5-mini:2026-12-11:30
    data: dict[str, Any] = _json(default_factory=dict)
    delivered: bool = False
    sent_at: datetime = Field(default_factory=utcnow)  # the last pass that sent it
    attempts: int = 1  # passes that sent it
    failed_hooks: list[str] = _json(default_factory=list)  # webhooks.hook_id of those that did not take it


class CachedResponse(SQLModel, table=True):
    """Content-addressed LLM response: key = sha256(model, messages/text, params, seed)."""

    key: str = Field(primary_key=True, max_length=64)
    model: str = Field(max_length=200)
    output: str = _text(nullable=False)
    input_tokens: int
    output_tokens: int
    cost: float
    latency_s: float
    cached_tokens: int | None = None  # the token classes the provider reported (migration 0013)
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # the optimization run that paid for this call (written with the response, in one commit),
    # so a run resumed after a crash knows what its earlier attempt spent
    run_id: int | None = Field(default=None, index=True)


class ApiToken(SQLModel, table=True):
    """An API token: only its SHA-256 digest is stored, under a unique index (a token is 32 random
    bytes, so a salt or a slow hash adds nothing); the clear token is shown once. A token made before
    migration 0007 has a PBKDF2 `token_hash` and `salt` instead, until its first use stores the digest."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    role: str = Field(max_length=20)  # viewer | reviewer | engineer | admin
    prefix: str = Field(index=True, max_length=16)  # the public part, to recognise a token in lists
    digest: str | None = Field(default=None, unique=True, index=True, max_length=64)  # sha256 of the token, hex
    salt: str | None = Field(default=None, max_length=64)  # legacy PBKDF2 tokens only
    token_hash: str | None = Field(default=None, max_length=128)  # legacy PBKDF2 tokens only
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    expires_at: datetime | None = None  # None: until revoked

    def live(self, now: datetime | None = None) -> bool:
        """Not revoked and not expired."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or as_utc(self.expires_at) > (now or utcnow())


class LoginFailure(SQLModel, table=True):
    """Failed logins from one client address in its current window, shared by every `trimloop serve`
    process (api.auth.LoginLimiter). The window is fixed: it starts at the first failure and lasts
    the limiter's window; times are epoch seconds from the limiter's clock."""

    client: str = Field(primary_key=True, max_length=64)  # an IP address (or "unknown")
    window_start: float = Field(index=True)
    failures: int = 0
    locked_until: float | None = None  # set once `failures` reaches the limit: the window's end


class UiSession(SQLModel, table=True):
    """A web UI browser session, shared by every `trimloop serve` process and kept across restarts.

    Only a SHA-256 digest of the cookie's session id is stored, so reading this table does not
    give anyone a working session. Anonymous rows hold a login form's CSRF token."""

    digest: str = Field(primary_key=True, max_length=64)
    csrf: str = Field(max_length=64)
    token_id: int | None = Field(default=None, index=True)  # None until signed in
    name: str | None = Field(default=None, max_length=200)
    role: str | None = Field(default=None, max_length=20)
    flash: list[str] = _json(default_factory=list)
    expires_at: datetime = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)

