"""Request and response schemas (XBase / XCreate / XPublic beside the tables), with examples."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator
from sqlmodel import Session

from trimloop.core import store
from trimloop.core.errors import UserError

from trimloop.core.evidence import Evidence, LatencyClaim, RunResults
from trimloop.core.status import RunStatus as RunState
from trimloop.core.status import SuggestionKind, SuggestionStatus, WatchVerdict
from trimloop.core.tables import PromptVersion

from trimloop.optimizer.config import MAX_BUDGET_CALLS, MAX_BUDGET_DOLLARS


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- prompts ------------------------------------------------------------------------------------
class PromptPublic(Public):
    id: int = Field(examples=[1])
    name: str = Field(examples=["support-triage"])
    connector: str = Field(examples=["local"])
    description: str | None = None
    created_at: datetime
    health: str | None = Field(default=None, examples=["healthy"],
                               description="last health verdict: healthy, degraded, broken or unknown (None: never "
                                           "checked); GET /prompts/{id}/health for the numbers")
    health_checked_at: datetime | None = None


class PromptVersionPublic(Public):
    id: int
    prompt_id: int
    sha: str = Field(examples=["9f2c…"])
    template: dict[str, Any] = Field(examples=[{"messages": [{"role": "user", "content": "Ticket: {{ticket}}"}]}])
    model: str = Field(examples=["gpt-4o-mini"])
    params: dict[str, Any] = Field(examples=[{"temperature": 0}])
    external_version: str | None = Field(examples=["2"])
    labels: list[str] = Field(examples=[["production"]], description="the prompt's labels sitting on this version")
    created_at: datetime

    @classmethod
    def of(cls, session: Session, versions: Sequence[PromptVersion]) -> list[PromptVersionPublic]:
        """The versions, each with the labels sitting on it."""
        labels = store.version_labels(session=session, version_ids=[v.id for v in versions if v.id is not None])
        return [cls.model_validate({**v.model_dump(), "labels": labels.get(v.id or 0, [])}) for v in versions]


class TrafficSummary(BaseModel):
    prompt_id: int
    days: int = Field(examples=[30])
    calls: int = Field(examples=[12000])
    calls_per_day: float
    total_cost: float = Field(examples=[4.2])
    cost_per_call: float | None
    latency_p50_s: float | None = None
    by_version: list[dict[str, Any]] = Field(examples=[[{"version_id": 2, "calls": 11000, "cost": 3.9}]])
    by_model: list[dict[str, Any]] = Field(examples=[[{"model": "gpt-4o-mini", "calls": 12000, "cost": 4.2}]])


# -- connectors ---------------------------------------------------------------------------------
class ConnectorPublic(BaseModel):
    name: str = Field(examples=["local"])
    type: str = Field(examples=["files"])
    read_only: bool = False


class ConnectorTest(BaseModel):
    name: str
    ok: bool
    prompts: int = Field(description="prompt versions readable right now")
    problems: list[str] = Field(default_factory=list)
    error: str | None = None


class SyncRequest(BaseModel):
    connectors: list[str] | None = Field(default=None, examples=[["local"]], description="default: all")
    full: bool = Field(default=False, description="reread all logs, ignoring cursors")


class PricePublic(BaseModel):
    per_mtok: float | None = Field(description="USD per 1M tokens; null when unknown (never 0 for unknown)")
    source: str = Field(description="where the price came from: litellm's map key, a setting, a fallback")


class TierPublic(BaseModel):
    above_tokens: int = Field(description="prompts longer than this are billed at these prices, whole call")
    input_per_mtok: float
    output_per_mtok: float | None
    source: str


class ModelPublic(BaseModel):
    id: str
    route: str
    api_base: str | None
    price_is_estimate: bool
    prices: dict[str, PricePublic] = Field(description="token class (input, cache_read, cache_write, output, "
                                                       "reasoning, batch_input, batch_output) → price")
    long_context: list[TierPublic] = Field(default_factory=list)


class PriceGapPublic(BaseModel):
    """Logs of one prompt on one model whose logged cost is off tokens × the catalog's price by > 5 %."""

    prompt: str
    model: str
    checked: int = Field(description="logs with cost, tokens and a known price")
    flagged: int = Field(description="of those, the ones off by more than 5 %")
    median_gap: float | None = Field(description="logged ÷ priced − 1, median over the flagged logs; null when "
                                                  "they were all priced at $0")
    price_source: str


class SyncReportPublic(BaseModel):
    connector: str
    prompts_added: int
    versions_added: int
    labels_changed: int
    logs_added: int
    logs_already_synced: int
    skipped: dict[str, int]
    problems: list[str]
    fatal: str | None
    looked: list[str] = Field(default_factory=list, examples=[["experiment 'support-bot' (id 1): 31 read"]],
                              description="where the logs were read (experiments, projects) and how many")
    notices: list[str] = Field(default_factory=list, description="why an asked-for place gave nothing, with the fix")
    price_gaps: list[PriceGapPublic] = Field(
        default_factory=list, description="logged costs that disagree with tokens × prices by more than 5 %")
    superseded: list[int] = Field(default_factory=list, description="suggestions superseded by moved labels")
    expired: list[int] = Field(default_factory=list,
                               description="pending suggestions that expired (scheduler.expire_pending_after_days)")


# -- datasets -----------------------------------------------------------------------------------
class DatasetPublic(Public):
    id: int
    prompt_id: int
    version_id: int | None
    name: str
    source: str = Field(examples=["logs"])
    content_hash: str
    seed: int
    config: dict[str, Any]
    created_at: datetime


class DatasetItemPublic(Public):
    id: int
    position: int
    split: str = Field(examples=["holdout"])
    inputs: dict[str, Any] = Field(examples=[{"ticket": "I was charged twice"}])
    expected: str | None = Field(examples=["billing"])
    baseline_output: str | None


class GoldImport(BaseModel):
    """A gold set sent inline: the file's text, its format and the column mapping."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{
        "prompt_id": 1, "format": "jsonl", "content": '{"ticket": "charged twice", "label": "billing"}\n',
        "inputs": {"ticket": "ticket"}, "expected": "label", "holdout_fraction": 0.3}]})

    prompt_id: int = Field(ge=1)
    format: Literal["csv", "tsv", "jsonl"]
    content: str = Field(min_length=1, max_length=20_000_000)
    inputs: dict[str, str] = Field(min_length=1, description="template variable → column")
    expected: str | None = None
    baseline: str | None = None
    version_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="a version of prompt_id")
    size: int | None = Field(default=None, ge=1)
    holdout_fraction: float = Field(default=0.3, ge=0, lt=1)
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="seeds the search/holdout split")
    name: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00-\x1f]*$")


class GoldImportResult(BaseModel):
    dataset: DatasetPublic
    rows: int
    problems: list[str]


# -- runs ---------------------------------------------------------------------------------------
class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{
        "prompt_id": 1, "budget_dollars": 2.0, "config": {"margin": 0.03, "models": ["local/smollm2-135m"]}}]})

    prompt_id: int = Field(ge=1)
    budget_calls: int | None = Field(default=None, ge=1, le=MAX_BUDGET_CALLS, strict=True,
                                     description="default: the prompt's config")
    budget_dollars: float | None = Field(default=None, gt=0, le=MAX_BUDGET_DOLLARS, strict=True,
                                         description="default: the prompt's config")
    config: dict[str, Any] = Field(default_factory=dict, description="optimizer options for this run")


class RunPublic(Public):
    id: int = Field(examples=[7])
    prompt_id: int
    status: RunState = Field(examples=["running"])
    config: dict[str, Any]
    budget_calls: int | None
    budget_dollars: float | None
    calls_made: int
    spent_dollars: float
    results: RunResults = Field(description="what the run found: calls per phase, certifications, the suggestion "
                                            "or why there is none")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @computed_field(description="the run's outcome in one line: the suggestion with its cut, or why there is none "
                    "(blocked: the preflight's root cause; failed: the error)",
                    examples=["suggestion #12: −38 % cost per call, label holds (margin 0.02, n 240)",
                              "blocked: the price of my-llama-8b is unknown and its logs carry no cost, so …"])
    @property
    def outcome(self) -> str:
        return self.results.outcome(self.status, self.error)


class RunStatus(RunPublic):
    events: int = Field(description="run events so far")
    last_event: str | None = None
    budget_used: float | None = Field(description="share of the budget spent (0–1)", examples=[0.35])


class RunEventPublic(Public):
    id: int
    run_id: int
    at: datetime
    kind: str = Field(examples=["candidate.eliminated"])
    data: dict[str, Any]


# -- suggestions --------------------------------------------------------------------------------
class SuggestionPublic(Public):
    id: int = Field(examples=[42])
    prompt_id: int
    run_id: int | None
    baseline_version_id: int
    candidate_version_id: int
    status: SuggestionStatus = Field(examples=["pending"])
    baseline_cost_per_call: float | None
    candidate_cost_per_call: float | None
    baseline_latency_p50_s: float | None
    candidate_latency_p50_s: float | None
    projected_monthly_savings: float | None = Field(examples=[812.5])
    savings_low: float | None
    savings_high: float | None
    optimization_spend: float
    payback_days: float | None
    retires_on: date | None = Field(default=None, description="set on a migration off a retiring model: the "
                                    "day its baseline model stops being served; the queue lists these first")
    kind: SuggestionKind = Field(default=SuggestionKind.cost, examples=["cost", "latency", "repair"],
                                 description="cost: cheaper, quality holds (non-inferiority); latency: faster on "
                                 "fresh paired calls against the control arm, quality holds, the cost may change; "
                                 "repair: better quality (superiority test), the cost may rise; the queue lists "
                                 "repairs after migrations")
    objective: str = Field(default="cost", examples=["cost", "latency p95", "cost (p95 ≤ 0.8 s)", "repair"],
                           description="what the suggestion serves: the run's objective, in words")
    claim: str = Field(default="", examples=["p95 1.9 s → 1.1 s, −42 %, cost +3 %, label holds (margin 0.02, n 240)"],
                       description="the suggestion in one line: its latency claim first when the objective read "
                       "latency, else the cost cut; then whether quality holds")
    latency: LatencyClaim | None = Field(
        default=None, description="the latency test on fresh paired calls (control vs candidate, same items, same "
        "time), when the run measured latency: before → after, ratio and its one-sided upper bound, n")
    reason: str | None
    created_at: datetime
    decided_at: datetime | None


class ReviewPublic(Public):
    reviewer: str
    decision: str
    reason: str | None
    created_at: datetime


class DeploymentPublic(Public):
    id: int
    connector: str
    label: str = Field(examples=["staging"])
    action: str = Field(examples=["deploy"])
    external_version: str | None
    status: str
    actor: str
    created_at: datetime


class WatchCheckPublic(BaseModel):
    signal: str = Field(description="an evaluator's key, or feedback:NAME")
    mode: Literal["paired", "unpaired"] = Field(description="paired: shadow scores of both versions on the "
                                                "same live inputs; unpaired: each version's own traffic")
    n_new: int
    n_old: int
    mean_new: float | None
    mean_old: float | None
    low: float | None = Field(description="anytime-valid lower bound on new − old")
    high: float | None = Field(description="anytime-valid upper bound on new − old")
    margin: float
    verdict: WatchVerdict


class WatchPublic(BaseModel):
    """The post-deploy watch of a deployed suggestion (checked after every sync)."""

    model_config = ConfigDict(from_attributes=True)

    suggestion_id: int
    prompt_id: int
    verdict: WatchVerdict = Field(description="holding | regressed | inconclusive")
    started_at: datetime = Field(description="when the new version could take traffic (its deploy)")
    checked_at: datetime | None
    looks: int = Field(description="syncs that checked it")
    baseline_window: str | None = Field(description="concurrent: the old version's traffic since the deploy; "
                                        "pre_deploy: its traffic before it")
    n_new: int
    n_old: int
    shadow_items: int
    shadow_cost: float
    checks: list[WatchCheckPublic]
    action: str | None = Field(description="alerted | rolled_back | promoted | failed")
    action_at: datetime | None
    note: str | None


class SuggestionDetail(SuggestionPublic):
    evidence: Evidence = Field(description="certification: n, intervals, verdicts per evaluator; changes, "
                                           "lineage, savings projection")
    prompt_name: str
    baseline: PromptVersionPublic
    candidate: PromptVersionPublic
    moves: list[dict[str, Any]] = Field(default_factory=list)
    reviews: list[ReviewPublic]
    deployments: list[DeploymentPublic]
    watch: WatchPublic | None = Field(default=None, description="the post-deploy watch, once deployed")


class TrialPublic(BaseModel):
    """One call of one arm on one item (an EvalResult)."""

    sample: int = 0
    output: str | None
    scores: dict[str, float] = Field(description="evaluator key → score in [0, 1]")
    input_tokens: int
    output_tokens: int
    cost: float = Field(description="USD at catalog prices (the baseline's: its logged tokens)")
    latency_s: float
    ttft_s: float | None = Field(default=None, description="time to first token, on a streamed call (stream = true)")
    cached: bool = Field(description="answered from the response cache or, for the baseline, from its logs")
    error: str | None = None


class ItemPairPublic(BaseModel):
    item_id: int
    inputs: dict[str, Any]
    expected: str | None
    differs: bool = Field(description="the candidate's output differs from the baseline's")
    baseline: TrialPublic | None
    candidate: list[TrialPublic] = Field(description="one per sample (several when temperature > 0)")


class SuggestionItems(BaseModel):
    """The holdout items certification tested the candidate on, both arms' stored results: the
    rows the evidence's tests re-derive from."""

    suggestion_id: int
    baseline_eval_run_id: int
    candidate_eval_run_id: int
    total: int = Field(description="items matching the filter, before limit and offset")
    items: list[ItemPairPublic]


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "drops the order id from replies"}]})
    reason: str = Field(min_length=1, max_length=2000, description="why (required)")


# -- reports, audit, tokens ---------------------------------------------------------------------
class SpendRow(BaseModel):
    day: date | None = None
    prompt_id: int | None = None
    prompt: str | None = None
    model: str | None = None
    calls: int
    cost: float


class QualityRow(BaseModel):
    """One quality signal of a deployed suggestion: projected (the holdout) and realized (live)."""

    signal: str
    projected_delta: float | None = Field(default=None, description="candidate − baseline on the holdout")
    projected_low: float | None = None
    projected_high: float | None = None
    realized_mean: float | None = Field(default=None, description="the new version's live mean")
    realized_old_mean: float | None = None
    realized_delta_low: float | None = Field(default=None, description="anytime-valid bounds on new − old, live")
    realized_delta_high: float | None = None
    n: int = 0


class SavingsRow(BaseModel):
    suggestion_id: int
    prompt: str
    status: str
    projected_monthly_savings: float | None
    savings_low: float | None = None
    savings_high: float | None = None
    baseline_cost_per_call: float | None = None
    realized_cost_per_call: float | None = None
    realized_calls: int | None = None
    realized_savings_to_date: float | None = None
    realized_monthly_savings: float | None = Field(
        default=None, description="run rate of the post-deploy logs; none while the window is too short")
    since: datetime | None = None
    retires_on: date | None = Field(default=None, description="the baseline's model retires that day: migrate before")
    projected_cost_per_call: float | None = Field(default=None, description="the candidate's projected cost per call")
    realized_cost_per_call_low: float | None = Field(default=None, description="95 % t-interval of the realized "
                                                     "cost per call")
    realized_cost_per_call_high: float | None = None
    cost_projection_error: float | None = Field(default=None, description="realized / projected cost per call − 1")
    window_days: float | None = Field(default=None, description="days of post-promotion traffic behind the figures")
    window_note: str | None = Field(default=None, description="why no monthly figure yet: \"window too short: "
                                    "N calls over M minutes …\"")
    watch_verdict: WatchVerdict | None = Field(default=None, description="the post-deploy watch's verdict")
    quality: list[QualityRow] = Field(default_factory=list, description="per signal: realized on live traffic "
                                      "(the watch) next to the holdout's certified difference")


class SavingsReport(BaseModel):
    since: datetime
    spend_by_day: list[SpendRow]
    spend_by_prompt: list[SpendRow]
    spend_by_model: list[SpendRow]
    projected: list[SavingsRow]
    realized: list[SavingsRow]
    total_projected_monthly: float = Field(description="projected monthly savings of the open suggestions that "
                                          "save (a repair or a faster version that costs more is not counted here)")
    total_projected_extra_cost_monthly: float = Field(
        0.0, description="projected monthly extra cost of the open suggestions that cost more (repairs, faster "
        "versions): shown apart, never netted against the savings")
    total_realized_monthly: float


class AuditPublic(Public):
    id: int
    at: datetime
    actor: str = Field(examples=["ana (reviewer)"])
    action: str = Field(examples=["suggestion.approve"])
    object_type: str
    object_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class TokenCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "finance-dashboard", "role": "viewer"}]})
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    role: Literal["viewer", "reviewer", "engineer", "admin", "ingest"]
    expires_in_days: float | None = Field(default=None, gt=0, le=3650,
                                          description="stops working this many days from now; unset: until revoked")

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:  # the store's rule, answered as 422 naming the field
        try:
            return store.check_token_name(value)
        except UserError as exc:
            raise ValueError(f"{exc.message} ({exc.hint})") from None


class TokenPublic(Public):
    id: int
    name: str
    role: str
    prefix: str = Field(description="the public part of the token, for recognising it")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = Field(default=None, description="after this it is refused (401); null: never")


class TokenCreated(TokenPublic):
    token: str = Field(description="the clear token: shown this once, never again")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = Field(examples=["0.1.0"])


# -- doctor -------------------------------------------------------------------------------------
class FindingPublic(BaseModel):
    """One checked fact (core.findings.Finding): ok, a warning, or a problem, with the fix."""

    level: Literal["ok", "warning", "problem"]
    code: str = Field(examples=["prices.unknown"], description="stable dotted key of the check")
    message: str = Field(examples=["the price of acme/big is unknown and the logs of triage carry no cost, …"])
    fix: str = Field(examples=['set it in trimloop.toml:\n[models."acme/big"]\ninput_per_mtok = …'])
    data: dict[str, Any] = Field(default_factory=dict, description="the numbers behind it")


class DoctorSection(BaseModel):
    name: Literal["config", "database", "egress", "connectors", "prices", "local_models", "prompts"]
    title: str = Field(examples=["Prices"])
    level: Literal["ok", "warning", "problem"] = Field(description="its worst finding")
    findings: list[FindingPublic]


class DoctorReportPublic(BaseModel):
    level: Literal["ok", "warning", "problem"] = Field(description="the worst finding: a problem means not ready")
    counts: dict[str, int] = Field(examples=[{"ok": 9, "warning": 1, "problem": 0}])
    sections: list[DoctorSection]
