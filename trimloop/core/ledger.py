"""A spend ledger with a hard cap on calls and dollars.

Before a call is made the gateway reserves its worst-case cost (prompt tokens plus max_tokens at
the model's price); a call whose reservation could take the ledger past either cap is refused
before it is made. After the call the reservation is settled with the actual cost.

A run resumed after a crash starts its ledger at what the earlier attempt spent (`calls`, `spent`),
so the caps hold for the run as a whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from trimloop.core.errors import SpendCapReached


@dataclass
class Ledger:
    max_calls: int | None = None
    max_dollars: float | None = None
    name: str = "run"
    run_id: int | None = None  # the optimization run paying: the gateway records it with each response
    on_spend: Callable[["Ledger"], None] | None = None
    calls: int = 0
    spent: float = 0.0
    cache_hits: int = 0
    _reserved_calls: int = field(default=0, repr=False)
    _reserved_dollars: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.max_calls is not None and self.max_calls < 0:
            raise ValueError("max_calls must be ≥ 0")
        if self.max_dollars is not None and self.max_dollars < 0:
            raise ValueError("max_dollars must be ≥ 0")

    def reserve(self, worst_case: float) -> None:
        """Hold room for one call, or raise SpendCapReached without making it."""
        if self.max_calls is not None and self.calls + self._reserved_calls + 1 > self.max_calls:
            raise SpendCapReached(
                f"call cap reached: {self.calls} of {self.max_calls} calls made",
                where=f"ledger {self.name!r}",
                hint="raise the run's budget in calls, or let the cached results carry a rerun",
            )
        # Compare in integer micro-cents so float noise cannot let a call slip past the cap.
        if self.max_dollars is not None and _units(
            self.spent + self._reserved_dollars + worst_case
        ) > _units(self.max_dollars):
            raise SpendCapReached(
                f"dollar cap reached: ${self.spent:.6f} spent, ${self._reserved_dollars:.6f} in "
                f"flight, next call could cost ${worst_case:.6f}, cap ${self.max_dollars:.6f}",
                where=f"ledger {self.name!r}",
                hint="raise the run's budget in dollars",
            )
        self._reserved_calls += 1
        self._reserved_dollars += worst_case

    def settle(self, worst_case: float, actual: float) -> None:
        self._release(worst_case)
        self.calls += 1
        self.spent += actual
        if self.on_spend:
            self.on_spend(self)

    def release(self, worst_case: float) -> None:
        """The call failed before anything was billed."""
        self._release(worst_case)

    def note_cache_hit(self) -> None:
        self.cache_hits += 1

    @property
    def remaining_dollars(self) -> float | None:
        return None if self.max_dollars is None else max(0.0, self.max_dollars - self.spent)

    @property
    def remaining_calls(self) -> int | None:
        return None if self.max_calls is None else max(0, self.max_calls - self.calls)

    def _release(self, worst_case: float) -> None:
        self._reserved_calls -= 1
        self._reserved_dollars = max(0.0, self._reserved_dollars - worst_case)


def _units(dollars: float) -> int:
    return round(dollars * 1e8)


@dataclass
class ShareLedger(Ledger):
    """A share of another ledger: its own caps, and every call also reserved and settled on the
    parent, so a part of a run (the rewrite move's GEPA) can never spend past its share nor the run's."""

    parent: Ledger | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.parent is not None:
            self.run_id = self.parent.run_id

    def reserve(self, worst_case: float) -> None:
        super().reserve(worst_case)
        if self.parent is not None:
            try:
                self.parent.reserve(worst_case)
            except SpendCapReached:
                super().release(worst_case)
                raise

    def settle(self, worst_case: float, actual: float) -> None:
        super().settle(worst_case, actual)
        if self.parent is not None:
            self.parent.settle(worst_case, actual)

    def release(self, worst_case: float) -> None:
        super().release(worst_case)
        if self.parent is not None:
            self.parent.release(worst_case)

    def note_cache_hit(self) -> None:
        super().note_cache_hit()
        if self.parent is not None:
            self.parent.note_cache_hit()
