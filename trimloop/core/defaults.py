"""The defaults every package shares, each set once: the non-inferiority margin and level, a
repair's minimum effect, and the month length that turns a daily saving into a monthly one
(projected and realized alike)."""

from __future__ import annotations

DEFAULT_MARGIN = 0.02  # non-inferiority margin on a 0–1 score (DESIGN.md, "Statistics")
DEFAULT_ALPHA = 0.05  # one-sided level of the non-inferiority test (and of a repair's superiority test)
DEFAULT_MIN_EFFECT = 0.05  # a repair must be better than the baseline by at least this (0–1 score)
DAYS_PER_MONTH = 30.0  # "monthly" savings are 30 days of the daily rate
