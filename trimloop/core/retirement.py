"""Model retirements: the day a provider stops serving a model, and what it means on a given day.

The date comes from the catalog (litellm's `deprecation_date`, or `models."ID".retires_on`). A
model is *retiring* on a day when its date is at most `retirement_warning_days` away, or past: a
production prompt on it is due first, and it is never a candidate. A `model.retiring` notice goes
out at each of `retirement_notice_days` before the date, once. Every function takes the day, so
tests and the scheduler set the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone

from trimloop.core.catalog import resolve_model
from trimloop.core.errors import TrimloopError
from trimloop.core.settings import Settings


@dataclass(frozen=True)
class Retirement:
    model: str
    retires_on: date
    source: str

    def days_left(self, today: date) -> int:
        return (self.retires_on - today).days

    def retiring(self, today: date, warning_days: int) -> bool:
        return self.days_left(today) <= warning_days

    def notice(self, today: date, notice_days: Iterable[int]) -> int | None:
        """The notice threshold due on `today`: the smallest of `notice_days` not below the days
        left (20 days left with [60, 30, 7]: 30), or None before the first. Sending only that one
        means a date learnt late gives one notice, not a burst of stale ones."""
        left = self.days_left(today)
        crossed = [d for d in notice_days if left <= d]
        return min(crossed) if crossed else None

    def words(self, today: date) -> str:
        left = self.days_left(today)
        when = f"in {left} day{'s' if left != 1 else ''}" if left >= 0 else f"{-left} days ago"
        return f"{self.model} retires on {self.retires_on.isoformat()} ({when})"


def today_of(now: datetime) -> date:
    """The UTC day of `now` (a naive time is taken as UTC, as the store keeps them)."""
    return (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).date()


def retirement_of(settings: Settings, model_id: str | None) -> Retirement | None:
    """The model's retirement, or None when no date is known (or the model cannot be resolved)."""
    if not model_id:
        return None
    try:
        resolved = resolve_model(settings, model_id)
    except TrimloopError:
        return None
    if resolved.retires_on is None:
        return None
    return Retirement(model=model_id, retires_on=resolved.retires_on, source=resolved.retires_source)


def retiring(settings: Settings, model_id: str | None, today: date) -> Retirement | None:
    """The model's retirement when it is within `retirement_warning_days` of `today` (or past), else None."""
    found = retirement_of(settings, model_id)
    return found if found is not None and found.retiring(today, settings.retirement_warning_days) else None


def split_retiring(settings: Settings, models: Iterable[str], today: date) -> tuple[list[str], dict[str, Retirement]]:
    """Candidate models that may be tried on `today`, and the retiring ones left out."""
    keep: list[str] = []
    out: dict[str, Retirement] = {}
    for model_id in models:
        found = retiring(settings, model_id, today)
        if found is None:
            keep.append(model_id)
        else:
            out[model_id] = found
    return keep, out
