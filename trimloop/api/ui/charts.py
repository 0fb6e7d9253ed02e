"""Geometry for the UI's inline SVG charts: plain numbers and labels, drawn by the templates.

Charts are computed here rather than in a JS library so that pages work air-gapped, without
scripts, and stay small; every label passes through Jinja's autoescape when drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trimloop.core.evidence import Verdict

PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#c53030", "#718096")


@dataclass
class Bar:
    x: float
    y: float
    w: float
    h: float
    color: str
    title: str


@dataclass
class Chart:
    """A chart of `width` × `height` user units: bars, axis ticks and a legend."""

    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    xlabels: list[tuple[float, str]] = field(default_factory=list)  # (x, label)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (color, name)
    empty: bool = False


def money(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"${value:,.0f}"
    if value != 0 and abs(value) < 0.01:  # two significant digits: $0.000024
        return f"${value:.{1 - math.floor(math.log10(abs(value)))}f}"
    return f"${value:,.{digits}f}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


MAX_SERIES = 6


def stacked_bars(days: list[str], series: dict[str, dict[str, float]], width: int = 640, height: int = 220,
                 max_series: int = MAX_SERIES, other: dict[str, float] | None = None) -> Chart:
    """Cost per day stacked by series (prompt or model); the smallest series merge into "other".
    `other`: the caller already merged them (per day), `series` holds the largest ones."""
    chart = Chart(width=width, height=height)
    totals = {name: sum(values.values()) for name, values in series.items()}
    names = sorted(totals, key=lambda n: -totals[n])
    if other is not None:
        series = series | {"other": other}
        names = names + ["other"]
    elif len(names) > max_series:
        keep, rest = names[:max_series - 1], names[max_series - 1:]
        other: dict[str, float] = {}
        for name in rest:
            for day, value in series[name].items():
                other[day] = other.get(day, 0.0) + value
        series = {n: series[n] for n in keep} | {"other": other}
        names = keep + ["other"]
    if not days or not names:
        chart.empty = True
        return chart
    per_day = [sum(series[n].get(d, 0.0) for n in names) for d in days]
    top = _nice_max(max(per_day))
    left, plot_h = 56, height - 24 - 8
    slot = (width - left - 4) / len(days)
    bar_w = max(1.0, slot * 0.8)
    for i, day in enumerate(days):
        y = 8 + plot_h
        for j, name in enumerate(names):
            value = series[name].get(day, 0.0)
            if value <= 0:
                continue
            h = value / top * plot_h
            y -= h
            chart.bars.append(Bar(x=left + i * slot + (slot - bar_w) / 2, y=y, w=bar_w, h=h,
                                  color=PALETTE[j % len(PALETTE)], title=f"{day} · {name}: {money(value, 4)}"))
    chart.ticks = [(8 + plot_h - plot_h * f, money(top * f, 2)) for f in (0, 0.5, 1)]
    every = max(1, len(days) // 6)
    chart.xlabels = [(left + i * slot + slot / 2, day[5:]) for i, day in enumerate(days) if i % every == 0]
    chart.legend = [(PALETTE[j % len(PALETTE)], name) for j, name in enumerate(names)]
    return chart


def paired_bars(rows: list[tuple[str, float | None, float | None]], width: int = 640) -> Chart:
    """Projected (blue) beside realized (green) monthly savings, one pair per deployed suggestion."""
    height = 40 + 36 * max(1, len(rows))
    chart = Chart(width=width, height=height, legend=[(PALETTE[0], "projected / month"),
                                                      (PALETTE[2], "realized / month")])
    if not rows:
        chart.empty = True
        return chart
    top = _nice_max(max(max(abs(p or 0), abs(r or 0)) for _, p, r in rows))
    left, plot_w = 180, width - 180 - 8
    for i, (label, projected, realized) in enumerate(rows):
        y = 8 + i * 36
        chart.xlabels.append((y + 16, label))
        for k, (value, color, name) in enumerate(((projected, PALETTE[0], "projected"),
                                                  (realized, PALETTE[2], "realized"))):
            w = max(0.0, (value or 0) / top * plot_w)
            chart.bars.append(Bar(x=left, y=y + k * 14, w=w, h=12, color=color,
                                  title=f"{label} · {name}: {money(value)}"))
    chart.ticks = [(left + plot_w * f, money(top * f, 0)) for f in (0, 0.5, 1)]
    return chart


def interval_plot(row: Verdict, width: int = 220, height: int = 28) -> dict[str, Any] | None:
    """The delta and its interval on an axis centred at 0, with the line the lower bound must clear
    in red: −margin, or +min_effect on a repair's superiority test (stored as margin −min_effect)."""
    lower, upper, delta = row.lower, row.upper, row.delta
    if lower is None or delta is None:
        return None
    upper = upper if upper is not None else delta
    threshold = -(row.margin or 0.0)
    span = max(abs(lower), abs(upper), abs(threshold), 0.01) * 1.25
    scale = lambda v: 6 + (v + span) / (2 * span) * (width - 12)  # noqa: E731
    return {"width": width, "height": height, "zero": scale(0.0), "margin": scale(threshold) if threshold else None,
            "lo": scale(lower), "hi": scale(upper), "delta": scale(delta), "mid": height / 2,
            "ok": row.ok}


def scatter(points: list[dict[str, Any]], width: int = 480, height: int = 280) -> dict[str, Any]:
    """Score against cost per call; used for a run's finished candidates (the page's JS redraws live)."""
    xs = [p["cost"] for p in points if p.get("cost") is not None]
    x_top = _nice_max(max(xs)) if xs else 1.0
    out = []
    for p in points:
        if p.get("cost") is None or p.get("score") is None:
            continue
        out.append({**p, "cx": 48 + p["cost"] / x_top * (width - 60), "cy": 8 + (1 - p["score"]) * (height - 40)})
    return {"width": width, "height": height, "points": out, "x_top": x_top}


def sparkline(days: list[Any], width: int = 240, height: int = 44) -> dict[str, Any] | None:
    """One signal per day as a line with a dot per day (`days`: records with day, n, value);
    the y axis runs from 0 to the largest value (1 for shares and scores)."""
    points = [(d.day, d.value, d.n) for d in days if d.value is not None]
    if not points:
        return None
    top = max(1.0, max(v for _, v, _ in points)) if max(v for _, v, _ in points) <= 1 else _nice_max(
        max(v for _, v, _ in points))
    step = (width - 12) / max(1, len(points) - 1)
    dots = [{"x": 6 + i * step, "y": 4 + (1 - v / top) * (height - 8), "title": f"{day}: {v:.3g} (n={n})"}
            for i, (day, v, n) in enumerate(points)]
    return {"width": width, "height": height, "dots": dots,
            "path": " ".join(f"{'M' if i == 0 else 'L'}{d['x']:.1f},{d['y']:.1f}" for i, d in enumerate(dots)),
            "first": points[0][0], "last": points[-1][0]}
