"""The defaults every package shares, each set once: the non-inferiority margin and level, and
the month length that turns a daily saving into a monthly one (projected and realized alike)."""

from __future__ import annotations

DEFAULT_MARGIN = 0.02  # non-inferiority margin on a 0–1 score (DESIGN.md, "Statistics")
DEFAULT_ALPHA = 0.05  # one-sided level of the non-inferiority test
DAYS_PER_MONTH = 30.0  # "monthly" savings are 30 days of the daily rate
