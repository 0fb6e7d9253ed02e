"""The finance dashboard's spend series, rolled up by the database (totals per prompt, per day, and
day × prompt for the prompts shown apart), draws the same chart as every day × prompt cell would."""

from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone

import pytest

from trimloop.api.ui import charts, views
from trimloop.core.db import session_scope
from trimloop.core.tables import LogRecord, Prompt, PromptVersion


@pytest.mark.parametrize("prompts", [8, 3])  # more prompts than the chart shows apart (an "other" series), fewer
def test_spend_series_equals_the_chart_of_every_cell(engine, prompts: int) -> None:
    today = datetime.now(timezone.utc).date()
    start = today - timedelta(days=4)
    cells: dict[str, dict[str, float]] = defaultdict(dict)
    calls: dict[str, int] = defaultdict(int)
    with session_scope(engine) as session:
        n = 0
        for p in range(prompts):
            prompt = Prompt(name=f"prompt-{p}", connector="local", config={})
            session.add(prompt)
            session.flush()
            version = PromptVersion(prompt_id=prompt.id, sha=f"{p:064d}", template={"kind": "text", "text": "t"},
                                    model="m", params={}, connector="local")
            session.add(version)
            session.flush()
            for d in range(5):
                day: date = start + timedelta(days=d)
                for k in range(1 + (p * 3 + d) % 4):  # prompts and days differ in calls and cost
                    cost = 0.001 * (p + 1) * (d + 1)
                    session.add(LogRecord(connector="local", external_id=f"l{n}", prompt_id=prompt.id,
                                          version_id=version.id, model="openai/m", cost=cost,
                                          called_at=datetime.combine(day, time(10, k), tzinfo=timezone.utc)))
                    n += 1
                    cells[prompt.name][str(day)] = cells[prompt.name].get(str(day), 0.0) + cost
                    calls[prompt.name] += 1
        session.flush()
        # a call outside the window counts nowhere
        session.add(LogRecord(connector="local", external_id="old", prompt_id=1, version_id=1, model="openai/m",
                              cost=5.0, called_at=datetime.combine(start - timedelta(days=1), time(12),
                                                                   tzinfo=timezone.utc)))
    with session_scope(engine) as session:
        got = views.spend_series(session, start, today)
    days = [str(start + timedelta(days=i)) for i in range(5)]
    want = charts.stacked_bars(days, cells)
    assert [name for _, name in got["by_prompt"].legend] == [name for _, name in want.legend]
    assert ("other" in [name for _, name in got["by_prompt"].legend]) == (prompts > charts.MAX_SERIES)
    assert [b.title for b in got["by_prompt"].bars] == [b.title for b in want.bars]
    assert [b.h for b in got["by_prompt"].bars] == pytest.approx([b.h for b in want.bars])
    assert got["by_prompt"].ticks == want.ticks
    total = sum(sum(v.values()) for v in cells.values())
    assert got["total"] == pytest.approx(total)
    assert {name: (c, pytest.approx(cost)) for name, c, cost in got["table"]} == {
        name: (calls[name], pytest.approx(sum(cells[name].values()))) for name in cells}
    by_model = charts.stacked_bars(days, {"m": {d: sum(cells[n].get(d, 0.0) for n in cells) for d in days}})
    assert [b.title for b in got["by_model"].bars] == [b.title for b in by_model.bars]
