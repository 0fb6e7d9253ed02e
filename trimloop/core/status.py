"""Statuses of suggestions and runs, and the one table of moves between them.

    pending ──► approved ──► deploying ──► deployed ──► rolling_back ──► rolled_back
       │  │        │ │          (back to approved    │  ▲  (back to deployed if the write fails)
       │  │        │ │           if the write fails) └► promoting (back to deployed, done or failed)
       │  │        │ │
       │  │        │ └──► superseded (its baseline is no longer production)
       │  │        └────► rejected
       │  └─────────────► rejected, superseded
       └────────────────► expired (nobody decided in time)

    queued ──► running ──► succeeded | failed | cancelled | blocked | baseline_unhealthy
       └─────► cancelled          (a dead worker's run stays running; another worker claims it)

A `blocked` run stopped before spending anything because its preflight found a problem (an
unpriced baseline model, too few distinct inputs, no usable quality signal, no usable candidate
model); its results carry the findings, root cause first (optimizer.preflight).
baseline_unhealthy: the production version is broken (evals.health), so the run did not search.

A prompt's health (evals.health) is one of HealthVerdict: healthy, degraded, broken, unknown.

Store functions move a status only along these arrows; anything else is a Conflict naming both ends.
"""

from __future__ import annotations

from enum import StrEnum

from trimloop.core.errors import Conflict


class SuggestionStatus(StrEnum):
    pending = "pending"
    approved = "approved"
    deploying = "deploying"  # claimed by one request writing it to the prompt store (api/deploy.py)
    deployed = "deployed"
    promoting = "promoting"
    rolling_back = "rolling_back"
    rolled_back = "rolled_back"
    rejected = "rejected"
    superseded = "superseded"
    expired = "expired"


class SuggestionKind(StrEnum):
    """What a suggestion is for: a `cost` cut that holds quality (non-inferiority), a `latency` cut
    that holds quality (measured on fresh paired calls against the control arm; the cost may
    change), or a `repair` that raises quality (superiority), possibly at a higher cost
    (optimizer.repair)."""

    cost = "cost"
    latency = "latency"
    repair = "repair"


class WatchVerdict(StrEnum):
    """The post-deploy watch's verdict on a deployed version against the one it replaced."""

    holding = "holding"
    regressed = "regressed"
    inconclusive = "inconclusive"


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    blocked = "blocked"  # the preflight found a problem: nothing was spent (results.findings say why)
    baseline_unhealthy = "baseline_unhealthy"  # the baseline is broken: no search (unless forced)


class HealthVerdict(StrEnum):
    """A prompt's health from its live signals (evals.health)."""

    healthy = "healthy"
    degraded = "degraded"  # a signal significantly worse than its own trailing baseline, or below a floor
    broken = "broken"  # a label evaluator worse than always answering the most common label, or most outputs unparseable
    unknown = "unknown"  # no signal to judge by


UNHEALTHY = (HealthVerdict.degraded, HealthVerdict.broken)


class CandidateStatus(StrEnum):
    """A candidate's race (racing → qualified | eliminated | stopped | dropped), then its certification."""

    racing = "racing"
    qualified = "qualified"  # shown non-inferior on the search items
    eliminated = "eliminated"  # shown inferior, or cut at a rung
    stopped = "stopped"  # the budget ran out while it raced
    dropped = "dropped"  # out of the race for budget, not shown inferior
    certified = "certified"
    not_certified = "not_certified"


S, R = SuggestionStatus, RunStatus
TRANSITIONS: dict[StrEnum, frozenset[StrEnum]] = {
    S.pending: frozenset({S.approved, S.rejected, S.superseded, S.expired}),
    S.approved: frozenset({S.deploying, S.deployed, S.rejected, S.superseded}),
    S.deploying: frozenset({S.deployed}),  # a failed write releases the claim back to approved (store.release_claim)
    S.deployed: frozenset({S.promoting, S.rolling_back, S.rolled_back}),
    S.promoting: frozenset({S.deployed}),
    S.rolling_back: frozenset({S.rolled_back}),  # released back to deployed if the write fails
    S.rolled_back: frozenset(), S.rejected: frozenset(), S.superseded: frozenset(), S.expired: frozenset(),
    R.queued: frozenset({R.running, R.cancelled}),
    R.running: frozenset({R.succeeded, R.failed, R.cancelled, R.blocked, R.baseline_unhealthy}),
    R.succeeded: frozenset(), R.failed: frozenset(), R.cancelled: frozenset(), R.blocked: frozenset(),
    R.baseline_unhealthy: frozenset(),
}
OPEN_SUGGESTION = (S.pending, S.approved)  # a decision (or a deploy) may still come
RUN_ACTIVE = (R.queued, R.running)
RUN_DONE = (R.succeeded, R.failed, R.cancelled, R.blocked, R.baseline_unhealthy)


def sources(to: SuggestionStatus | RunStatus) -> tuple[str, ...]:
    """Every status that may move to `to` (the `WHERE status IN (...)` of a conditional update)."""
    return tuple(s.value for s, targets in TRANSITIONS.items() if to in targets)


def allowed(before: str, to: SuggestionStatus | RunStatus) -> bool:
    kind = type(to)
    try:
        return to in TRANSITIONS[kind(before)]
    except ValueError:  # a status this version does not know
        return False


def illegal(what: str, before: str, to: SuggestionStatus | RunStatus, *, hint: str) -> Conflict:
    """The Conflict for a move the table does not allow, naming both ends."""
    kind = type(to)
    try:
        nexts = sorted(t.value for t in TRANSITIONS[kind(before)])
    except ValueError:
        nexts = []
    return Conflict(f"{what} is {before}; it cannot become {to.value} ({before} → {to.value} is not allowed; "
                    f"from {before}: {', '.join(nexts) or 'no further change'})", where=what, hint=hint)
