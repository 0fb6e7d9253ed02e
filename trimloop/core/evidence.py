"""What a suggestion carries and what a run found, as typed records: the evidence per evaluator,
the changes, the lineage, the savings projection and a run's results.

The optimizer writes them, the API, UI and CLI read them; they are stored as JSON columns that
validate on write (see `TypedJSON` in core.tables; fields that are None are left out, and every
optional field defaults to None). Rows written before a field existed still load: every field of
a record has a default, unknown keys are kept, and a field that no longer validates is set aside
in `unreadable` rather than failing the whole row.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

PASSING = ("non-inferior", "superior", "pass", "passed")  # verdicts that count as a pass (older rows wrote the last two)


class Record(BaseModel):
    """A stored record: keeps keys it does not know (written by a newer or older trimloop)."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def load(cls, raw: Any) -> Self:
        """Validate a stored value; a top-level field that fails goes to `unreadable`, not the row."""
        if isinstance(raw, cls):
            return raw
        if not isinstance(raw, dict):  # not a record at all: an empty one, the value kept aside
            return cls.model_validate({"unreadable": {"stored": raw}} if "unreadable" in cls.model_fields else {})
        data = dict(raw)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            set_aside = {k: data.pop(k) for k in bad if k in data}
            log.warning("stored %s: fields %s do not validate, kept aside", cls.__name__, sorted(set_aside))
            out = cls.model_validate(data)
            if hasattr(out, "unreadable"):
                out.unreadable = set_aside  # type: ignore[attr-defined]
            return out


class Verdict(Record):
    """The test of one evaluator on the holdout (evals.stats.NonInferiority): non-inferiority at a
    margin, or — on a repair — superiority by at least `min_effect` (stored as margin −min_effect)."""

    method: str | None = Field(default=None, examples=["paired t"])
    n: int | None = Field(default=None, description="items (clusters) compared")
    samples: int | None = Field(default=None, description="scored outputs per arm, summed over items")
    baseline_mean: float | None = None
    candidate_mean: float | None = None
    delta: float | None = Field(default=None, description="candidate − baseline")
    lower: float | None = Field(default=None, description="one-sided (1 − α) lower bound of delta")
    upper: float | None = None
    margin: float | None = Field(default=None, description="the test passes when lower > −margin")
    alpha: float | None = None
    p_value: float | None = Field(default=None, description="of H0: delta ≤ −margin")
    verdict: str | None = Field(default=None, examples=["non-inferior", "inferior", "inconclusive", "superior",
                                                         "not superior"])
    passed: bool | None = None
    test: str | None = Field(default=None, examples=["non-inferiority", "superiority"],
                             description="None on rows written before repairs: non-inferiority")
    min_effect: float | None = Field(default=None, description="superiority: the lower bound must exceed it")

    @property
    def ok(self) -> bool:
        return self.passed is True or self.verdict in PASSING


class Changes(Record):
    """What differs between the baseline and the candidate."""

    template_diff: list[tuple[str, str]] = Field(default_factory=list,
                                                 description="[op, text] with op in equal | delete | insert")
    template_chars: list[int] = Field(default_factory=list, description="[before, after]")
    template_kind: list[str] = Field(default_factory=list, description="[before, after]: chat | text")
    model: list[str | None] = Field(default_factory=list, description="[before, after]")
    params: dict[str, list[Any]] = Field(default_factory=dict, description="name → [before, after], changed ones only")


class LineageStep(Record):
    """One move that made the candidate."""

    move: str = Field(default="", examples=["retarget", "shorten", "prune_examples", "rewrite"])
    detail: str = ""


class DifferingItem(Record):
    """A holdout item whose candidate output differs from the baseline's."""

    item_id: Any = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    expected: str | None = None
    baseline_output: str | None = None
    candidate_output: str | None = None
    baseline_scores: dict[str, float] = Field(default_factory=dict)
    candidate_scores: dict[str, float] = Field(default_factory=dict)


class CertificationOutcome(Record):
    passed: bool = False
    reason: str = ""


class SavingsProjection(BaseModel):
    """Savings from real traffic (optimizer.savings.project): per month, with an interval."""

    window_days: int
    calls_per_day: float
    baseline_cost_per_call: float
    candidate_cost_per_call: float
    cost_ratio: float
    monthly: float
    monthly_low: float
    monthly_high: float
    baseline_latency_p50_s: float | None = None
    baseline_latency_p95_s: float | None = None
    candidate_latency_p50_s: float | None = None
    candidate_latency_p95_s: float | None = None
    optimization_spend: float
    payback_days: float | None = None
    cached_share_before: float | None = Field(
        default=None, description="share of the baseline's prompt tokens read from the provider's cache")
    cached_share_after: float | None = Field(
        default=None, description="the same share projected for the candidate (provider's cache rules)")
    naive_monthly: float | None = Field(
        default=None, description="the saving at tokens × list price, ignoring the cache (for comparison)")
    cache_note: str | None = Field(default=None, description="what caching does to the saving, in words")
    saving_share: dict[str, float] | None = Field(
        default=None, description="share of the saving from each token class: input, output (reasoning "
        "included), cached (what the prompt cache adds); they sum to 1")


class Deadline(Record):
    """The baseline model's retirement: after `retires_on` the provider stops serving it, so the
    prompt must move to another model before then (core.retirement)."""

    model: str = ""
    retires_on: date | None = None
    days_left: int | None = Field(default=None, description="days from the run to the date")
    source: str = Field(default="", examples=["litellm price map (deprecation_date)", "settings (retires_on)"])


class SearchSummary(Record):
    search_calls: int | None = None
    candidates: int | None = None
    budget_exhausted: bool | None = None
    notes: list[str] | None = None


class FeedbackSummary(Record):
    """Human feedback on the baseline's answers, per feedback name (evals.feedback)."""

    items: int = 0
    sources: dict[str, int] = Field(default_factory=dict)
    mean: float | None = None
    n: int | None = None
    values: dict[str, int] | None = None


class ControlArm(Record):
    """The baseline control arm (issue 21): the baseline re-run beside the candidates, so that the
    comparison is against fresh answers made at the same time (the provider's noise cancels)."""

    on: bool = False
    reason: str = Field(default="", examples=["the objective reads latency (latency p95)"])
    calls: int | None = Field(default=None, description="control calls asked for (search + certification)")
    items: int | None = Field(default=None, description="holdout items the candidate was compared with it on")
    agreement: dict[str, float] = Field(
        default_factory=dict, description="evaluator → the control's mean score against the logged outputs")
    eval_run_id: int | None = Field(default=None, description="the control's holdout results (EvalRun)")


class LatencyClaim(Record):
    """A latency comparison on paired fresh calls (control vs candidate, same items, same time):
    a one-sided test on the paired log-latency differences, with a minimum effect."""

    objective: str = Field(default="", examples=["latency p95"])
    stat: str = Field(default="", examples=["p95", "ttft_p50"])
    n: int | None = None
    before_s: float | None = Field(default=None, description="the control's latency (the stat)")
    after_s: float | None = Field(default=None, description="the candidate's latency (the stat)")
    ratio: float | None = Field(default=None, description="after / before")
    ratio_upper: float | None = Field(default=None, description="one-sided (1 − α) upper bound of the ratio")
    min_effect: float | None = Field(default=None, description="passes when ratio_upper < 1 − min_effect")
    alpha: float | None = None
    method: str | None = Field(default=None, examples=["paired t on log latency", "paired bootstrap"])
    passed: bool | None = None
    cost_change: float | None = Field(default=None, description="candidate cost per call / baseline's − 1")
    line: str | None = Field(default=None, examples=["p95 1.9 s → 1.1 s, −42 %, cost +3 %"])
    ttft_p50_s: list[float] | None = Field(
        default=None, description="time to first token, median [control, candidate], on the paired streamed calls "
        "(params stream = true); reported beside the total latency whatever the objective reads")
    ttft_p95_s: list[float] | None = Field(default=None, description="time to first token, p95 [control, candidate]")
    ttft_n: int | None = Field(default=None, description="items with a streamed call in both arms")


class QualityGain(Record):
    """One evaluator's gain on a repair: the holdout means before → after, the difference and its
    one-sided (1 − α) interval, from the superiority test (the same numbers as its Verdict)."""

    before: float | None = None
    after: float | None = None
    delta: float | None = Field(default=None, description="after − before")
    lower: float | None = Field(default=None, description="one-sided (1 − α) lower bound of delta")
    upper: float | None = None
    min_effect: float | None = Field(default=None, description="the lower bound had to exceed it")
    n: int | None = None
    passed: bool | None = None


class RepairSummary(Record):
    """What a repair changes: the quality gain per evaluator (with its interval) and the cost per
    call before → after, which may rise (a stronger model); `monthly_cost_change` > 0 is a rise."""

    min_effect: float | None = None
    alpha: float | None = Field(default=None, description="the level the gains' bounds are at: the run's α / certify_top")
    gains: dict[str, QualityGain] = Field(default_factory=dict, description="evaluator key → its gain")
    cost_per_call: list[float | None] = Field(default_factory=list, description="[before, after], $")
    cost_change: float | None = Field(default=None, description="after / before − 1 (+0.4: 40 % dearer)")
    monthly_cost_change: float | None = Field(default=None, description="$ per month at current traffic (+: more)")
    baseline_health: str | None = Field(default=None, examples=["broken", "degraded"])
    health_reasons: list[str] = Field(default_factory=list)

    def line(self) -> str:
        """"label +0.62 (0.02 → 0.64, lower bound +0.54 > +0.05), cost per call +35 %"."""
        parts = [f"{k} {g.delta:+.2f} ({g.before:.2f} → {g.after:.2f}, lower bound {g.lower:+.2f} > "
                 f"{g.min_effect:+g})" for k, g in sorted(self.gains.items())
                 if None not in (g.delta, g.before, g.after, g.lower, g.min_effect)]
        if self.cost_change is not None:
            parts.append(f"cost per call {self.cost_change * 100:+.0f} %")
        return ", ".join(parts)


class Evidence(Record):
    """A suggestion's evidence: what changed, how it was found, the test per evaluator, the savings.
    `kind` is `repair` on a repair (certified by the superiority test; `repair` has the gain and
    the cost change), `latency` when the run's objective was latency (`latency` has the claim),
    else `cost` (None on rows written before repairs)."""

    kind: str | None = Field(default=None, examples=["cost", "latency", "repair"])
    repair: RepairSummary | None = None
    changes: Changes = Field(default_factory=Changes)
    lineage: list[LineageStep] = Field(default_factory=list)
    evaluators: dict[str, Verdict] = Field(default_factory=dict, description="evaluator key → its test")
    verdict: str | None = Field(default=None, description="certification's reason, in words")
    n: int | None = Field(default=None, description="holdout items planned")
    n_wanted: int | None = Field(default=None, description="holdout items the power helper wanted")
    prompt_tokens: list[float] = Field(default_factory=list, description="mean input tokens [before, after]")
    output_tokens: list[float] | None = Field(default=None,
                                              description="mean output tokens, reasoning included [before, after]")
    reasoning_tokens: list[float] | None = Field(default=None, description="mean reasoning tokens [before, after]")
    differing_items: list[DifferingItem] = Field(default_factory=list)
    savings: SavingsProjection | None = None
    search: SearchSummary | None = None
    price_sources: dict[str, str] = Field(default_factory=dict)
    deadline: Deadline | None = Field(default=None, description="set on a migration off a retiring model")
    prices: dict[str, dict[str, str]] | None = Field(
        default=None, description="model → token class → '$ per 1M tokens (source)'")
    evaluator_config: list[str] = Field(default_factory=list)
    baseline_feedback: dict[str, FeedbackSummary] = Field(default_factory=dict)
    baseline_eval_run_id: int | None = Field(default=None, description="the baseline's holdout results (EvalRun)")
    candidate_eval_run_id: int | None = Field(
        default=None, description="the candidate's holdout results (EvalRun); with the baseline's, the evaluators' "
        "tests re-derive from these rows (GET /suggestions/{id}/items)")
    control: ControlArm | None = Field(default=None, description="the baseline control arm, when it ran")
    latency: LatencyClaim | None = Field(default=None, description="the latency test on fresh paired calls")
    unreadable: dict[str, Any] = Field(default_factory=dict,
                                       description="stored fields that no longer validate (older rows)")

    def margin(self) -> float | None:
        """The widest margin used (evaluators may have their own)."""
        margins = [v.margin for v in self.evaluators.values() if v.margin is not None]
        return max(margins) if margins else None

    def passes(self) -> int:
        return sum(1 for v in self.evaluators.values() if v.ok)

    def objective(self) -> str:
        """What the suggestion serves, in words: "latency p95", "cost", "cost (p95 ≤ 0.8 s)", "repair"."""
        if self.kind == "repair" or self.repair is not None:
            return "repair"
        if self.latency is not None and self.latency.objective:
            return self.latency.objective
        return self.kind or "cost"

    def cut_line(self, before: float | None, after: float | None) -> str:
        """The suggestion in one line, from the baseline's and the candidate's cost per call:
        "−38 % cost per call, label holds (margin 0.02, n 240)"; a latency claim first when the
        objective read latency ("p95 1.9 s → 1.1 s, −42 %, cost +3 %, label holds …"); a repair's
        "repair: label +0.62 (0.02 → 0.64, lower bound +0.54 > +0.05), cost per call +35 %"."""
        if self.repair is not None:
            return "repair: " + (self.repair.line() or "certified")
        parts = []
        if before and after is not None:
            change = (after - before) / before * 100
            parts.append(f"{'−' if change < 0 else '+'}{abs(change):.0f} % cost per call")
        keys = sorted(self.evaluators)
        if keys:
            held = [k for k in keys if self.evaluators[k].ok]
            words = (f"{', '.join(held)} hold{'s' if len(held) == 1 else ''}" if len(held) == len(keys)
                     else f"{len(held)} of {len(keys)} evaluators hold")
            n = max((v.n or 0 for v in self.evaluators.values()), default=0)
            margin = self.margin()
            parts.append(words + (f" (margin {margin:g}, n {n})" if margin is not None else ""))
        if self.latency is not None and self.latency.line:  # the latency claim (with its cost change) first
            parts = [self.latency.line] + [p for p in parts if "cost per call" not in p]
        return ", ".join(parts) or "certified"


class CandidateScores(Record):
    """How one candidate did in the search's race (Candidate.scores; the `candidate.scored` event)."""

    sha: str | None = None
    label: str | None = None
    lineage: list[LineageStep] = Field(default_factory=list)
    model: str | None = None
    status: str | None = Field(default=None, description="the race's status (see CandidateStatus)")
    reason: str | None = None
    n: int | None = Field(default=None, description="search items scored")
    calls: int | None = None
    est_cost: float | None = None
    cost_per_call: float | None = None
    latency_p50_s: float | None = None
    evidence: dict[str, Verdict] = Field(default_factory=dict, description="evaluator key → its test on the search items")
    certification: CertificationOutcome | None = None

    def mean_score(self) -> float | None:
        """The candidate's mean score over its evaluators (for the score–cost scatter)."""
        means = [v.candidate_mean for v in self.evidence.values() if v.candidate_mean is not None]
        return sum(means) / len(means) if means else None


class CertificationSummary(Record):
    sha: str
    label: str = ""
    passed: bool = False
    reason: str = ""
    n: int | None = None
    wanted: int | None = None
    eval_run_id: int | None = Field(default=None, description="the candidate's holdout results (EvalRun)")


class Migration(Record):
    """A run on a prompt whose model retires: the deadline, the retiring models it left out, and
    — when no candidate held quality — the best candidate's evidence, for the person who must decide."""

    deadline: Deadline = Field(default_factory=Deadline)
    excluded_models: dict[str, date] = Field(default_factory=dict, description="retiring candidate models left out")
    certified: bool = False
    best: CertificationSummary | None = Field(default=None, description="the best candidate tried")
    best_model: str | None = None
    best_evidence: dict[str, Verdict] = Field(default_factory=dict, description="its test per evaluator")
    message: str | None = Field(default=None, examples=["no certified replacement: needs a person before 2026-12-11"])


class PreflightFinding(Record):
    """One check a run makes before it spends anything (optimizer.preflight): ok, a warning that is
    shown but does not stop the run, or a problem that blocks it, with the fix."""

    level: Literal["ok", "warning", "problem"] = Field(default="ok", examples=["problem"])
    code: str = Field(default="", examples=["baseline_price_unknown"])
    message: str = Field(default="", examples=["the price of my-llama-8b is unknown and its 31 logs carry no cost"])
    fix: str = Field(default="", examples=['[models."my-llama-8b"]\ninput_per_mtok = 0.05\noutput_per_mtok = 0.10'])
    data: dict[str, Any] = Field(default_factory=dict, description="the numbers behind the finding")


class RepairOutcome(Record):
    """A repair run's outcome: certified, or "no repair found" with the best candidate's evidence
    (its holdout test, else its race on the search items) for the person who must fix the prompt."""

    min_effect: float | None = None
    certified: bool = False
    tried: int | None = Field(default=None, description="candidates raced")
    best: CertificationSummary | None = None
    best_model: str | None = None
    best_evidence: dict[str, Verdict] = Field(default_factory=dict)
    message: str | None = Field(default=None, examples=["no repair found: the best of 9 candidates …"])


class RunResults(Record):
    """What a run found (OptimizationRun.results); empty for a failed run, a note when cancelled,
    the preflight's findings (problems first) when blocked."""

    dataset_id: int | None = None
    baseline_calls: int | None = None
    search_calls: int | None = None
    certify_calls: int | None = None
    calls: int | None = None
    spent: float | None = None
    cache_hits: int | None = None
    search_requests: int | None = Field(default=None, description="calls asked for, paid or answered from the cache")
    certify_requests: int | None = None
    candidates: int | None = None
    budget_exhausted: bool | None = None
    front: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    certifications: list[CertificationSummary] = Field(default_factory=list)
    baseline_scores: dict[str, float | None] = Field(default_factory=dict)
    baseline_feedback: dict[str, FeedbackSummary] = Field(default_factory=dict)
    suggestion_id: int | None = None
    no_suggestion: str | None = Field(default=None, description="why the run made no suggestion")
    objective: str | None = Field(default=None, examples=["cost", "latency p95"], description="what the run cut")
    control: ControlArm | None = Field(default=None, description="whether the baseline control arm ran, and its calls")
    migration: Migration | None = Field(default=None, description="set when the baseline's model retires")
    repair: RepairOutcome | None = Field(default=None, description="set on a repair run")
    suggestion_cut: str | None = Field(default=None, description="the suggestion in one line",
                                       examples=["−38 % cost per call, label holds (margin 0.02, n 240)"])
    findings: list[PreflightFinding] = Field(default_factory=list,
                                             description="the preflight's checks: problems (which block) first")
    note: str | None = None
    baseline_health: HealthReport | None = Field(
        default=None, description="the baseline's check on the run's items (a broken one ends the run baseline_unhealthy)")
    unreadable: dict[str, Any] = Field(default_factory=dict,
                                       description="stored fields that no longer validate (older rows)")

    def problems(self) -> list[PreflightFinding]:
        return [f for f in self.findings if f.level == "problem"]

    def outcome(self, status: str, error: str | None = None) -> str:
        """The run's outcome in one line: the suggestion with its cut, or why there is none."""
        if status == "blocked":
            first = next(iter(self.problems()), None)
            return "blocked: " + (first.message if first else "the preflight found a problem")
        if status == "failed":
            return "failed: " + (error or "see the run's events")
        if status == "cancelled":
            return "cancelled"
        if status in ("queued", "running"):
            return status
        if self.suggestion_id is not None:
            return f"suggestion #{self.suggestion_id}" + (f": {self.suggestion_cut}" if self.suggestion_cut else "")
        if self.no_suggestion:
            return self.no_suggestion
        return f"{status}: {error}" if error else str(status)


class HealthDay(Record):
    """One day of a health signal: its value and how many calls it rests on."""

    day: str = Field(default="", examples=["2026-12-01"])
    n: int = 0
    value: float | None = None


class HealthSignal(Record):
    """One live signal of a prompt (evals.health): an evaluator against gold answers, a feedback
    name, a format failure share, the provider error share, cost or latency."""

    key: str = Field(default="", examples=["evaluator:label", "feedback:thumbs", "format:no_label", "errors"])
    kind: str = Field(default="", examples=["evaluator", "feedback", "format", "errors", "cost", "latency"])
    title: str = Field(default="", description="what it measures, in words")
    better: str = Field(default="higher", description="higher | lower | none (cost and latency are shown, not judged)")
    n: int = 0
    value: float | None = None
    low: float | None = Field(default=None, description="95 % interval (Wilson, t or bootstrap), for showing")
    high: float | None = None
    method: str | None = Field(default=None, examples=["wilson", "t", "bootstrap"])
    cs_low: float | None = Field(default=None, description="anytime-valid confidence sequence, for deciding")
    cs_high: float | None = None
    baseline: float | None = Field(default=None, description="mean before the recent days (its trailing baseline)")
    baseline_n: int | None = None
    recent: float | None = Field(default=None, description="mean over the recent days")
    recent_n: int | None = None
    floor: float | None = Field(default=None, description="configured floor (degraded below it)")
    status: str = Field(default="ok", examples=["ok", "degraded", "broken", "info"])
    note: str | None = None
    days: list[HealthDay] = Field(default_factory=list)


class LabelCheck(Record):
    """A label evaluator against always answering the most common gold label, on the same items."""

    evaluator: str = ""
    n: int = 0
    accuracy: float | None = None
    majority_label: str | None = None
    majority_rate: float | None = None
    no_label_share: float | None = Field(default=None, description="answers that name no label (or several)")
    upper: float | None = Field(default=None, description="anytime-valid upper bound of accuracy − majority rate")
    broken: bool = False


class HealthReport(Record):
    """A prompt's health with the numbers behind it: the verdict, why, and every signal."""

    prompt_id: int | None = None
    version_id: int | None = None
    version_sha: str | None = None
    source: str = Field(default="logs", description="logs (the trailing window) or dataset N (a run's baseline check)")
    verdict: str = Field(default="unknown", examples=["healthy", "degraded", "broken", "unknown"])
    reasons: list[str] = Field(default_factory=list, description="why, with the numbers")
    window_days: int | None = None
    recent_days: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    calls: int = 0
    alpha: float | None = None
    gold_from: str | None = Field(default=None, description="where gold answers came from")
    signals: list[HealthSignal] = Field(default_factory=list)
    label_checks: list[LabelCheck] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    checked_at: datetime | None = None
    unreadable: dict[str, Any] = Field(default_factory=dict,
                                       description="stored fields that no longer validate (older rows)")

    def message(self) -> str:
        """The verdict in one line: "broken: label: agrees with reviewer labels on 2 % of 180 items; …"."""
        return f"{self.verdict}: " + ("; ".join(self.reasons) if self.reasons else "no problem found")


RunResults.model_rebuild()  # it names HealthReport, defined after it
