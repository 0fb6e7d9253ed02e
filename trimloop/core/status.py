"""Statuses of suggestions and runs, and the one table of moves between them.

    pending ──► approved ──► deploying ──► deployed ──► rolling_back ──► rolled_back
       │  │        │ │          (back to approved    │  ▲  (back to deployed if the write fails)
       │  │        │ │           if the write fails) └► promoting (back to deployed, done or failed)
       │  │        │ │
       │  │        │ └──► superseded (its baseline is no longer production)
       │  │        └────► rejected
       │  └─────────────► rejected, superseded
       └────────────────► expired (nobody decided in time)

    queued ──► running ──► succeeded | failed | cancelled
       └─────► cancelled          (a dead worker's run stays running; another worker claims it)

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
    R.running: frozenset({R.succeeded, R.failed, R.cancelled}),
    R.succeeded: frozenset(), R.failed: frozenset(), R.cancelled: frozenset(),
}
OPEN_SUGGESTION = (S.pending, S.approved)  # a decision (or a deploy) may still come
RUN_ACTIVE = (R.queued, R.running)
RUN_DONE = (R.succeeded, R.failed, R.cancelled)


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
