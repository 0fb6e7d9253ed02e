"""Sync flags logs whose cost disagrees with tokens × prices by more than 5 %, per prompt and model."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import log_line, make_store, write_logs
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core.settings import ModelConfig, Settings

M = 1e-6  # gpt-4o-mini: input 0.15, cached input 0.075, output 0.60 per 1M tokens


def test_costs_off_their_tokens_are_flagged_with_prompt_model_and_gap(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    right = 1000 * 0.15 * M + 10 * 0.60 * M
    cached = 200 * 0.15 * M + 800 * 0.075 * M + 10 * 0.60 * M  # right only with the cache discount
    write_logs(root / "logs" / "calls.jsonl", [
        log_line(1, input_tokens=1000, output_tokens=10, cost=right),
        log_line(2, input_tokens=1000, output_tokens=10, cost=right * 1.04),  # within 5 %
        log_line(3, input_tokens=1000, output_tokens=10, cached_input_tokens=800, cost=cached),
        log_line(4, input_tokens=1000, output_tokens=10, cost=right * 10),  # priced per 1K, not per 1M?
        log_line(5, input_tokens=1000, output_tokens=10, cost=right * 10),
        log_line(6, input_tokens=None, cost=0.5),  # no tokens: nothing to check
    ])
    report = sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(root)}),
                            settings=Settings())
    assert report.logs_added == 6
    with engine.connect() as conn:
        priced = conn.execute(text("select cost from logrecord where external_id = 'call-6'")).scalar()
    assert priced == 0.5  # a logged cost stays as logged
    [gap] = report.price_gaps
    assert (gap.prompt, gap.model, gap.checked, gap.flagged) == ("triage", "gpt-4o-mini", 5, 2)
    assert abs(gap.median_gap - 9.0) < 1e-9
    assert "2 of 5 logged costs are 900 % more than tokens × price (median)" in str(gap)
    assert report.to_dict()["price_gaps"][0]["median_gap"] == 9.0


def test_a_log_without_cost_is_priced_by_the_same_cost_function(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl", [
        log_line(1, input_tokens=1000, cached_input_tokens=800, output_tokens=10, cost=None),
        log_line(2, model="acme/unpriced", cost=None)])
    report = sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(root)}),
                            settings=Settings())
    assert report.price_gaps == []
    with engine.connect() as conn:
        rows = conn.execute(text("select external_id, cost, meta from logrecord")).all()
    costs = {eid: cost for eid, cost, _ in rows}
    meta = {eid: json.loads(m) if isinstance(m, str) else m for eid, _, m in rows}
    assert abs(costs["call-1"] - (200 * 0.15 * M + 800 * 0.075 * M + 10 * 0.60 * M)) < 1e-15
    assert meta["call-1"]["cost_from"] == "tokens"  # the record says its cost was computed
    assert costs["call-2"] is None  # unknown price: unknown cost, not 0
    assert "cost_from" not in meta["call-2"]


def test_a_custom_price_setting_is_what_the_logs_are_checked_against(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl", [log_line(1, input_tokens=1000, output_tokens=10, cost=0.0012)])
    settings = Settings(models={"gpt-4o-mini": ModelConfig(input_per_mtok=1.0, output_per_mtok=20.0)})
    report = sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(root)}),
                            settings=settings)
    assert report.price_gaps == []  # 1000 × 1.0 + 10 × 20.0 per 1M = $0.0012
    wrong = Settings(models={"gpt-4o-mini": ModelConfig(input_per_mtok=2.0, output_per_mtok=20.0)})
    again = sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(root)}),
                           settings=wrong, full=True)
    assert [round(g.median_gap, 3) for g in again.price_gaps] == [round(0.0012 / 0.0022 - 1, 3)]
    assert again.price_gaps[0].price_source.startswith("custom price")


def test_a_zero_price_for_billed_calls_is_flagged_without_an_infinite_gap(engine: Engine, tmp_path: Path) -> None:
    root = make_store(tmp_path)
    write_logs(root / "logs" / "calls.jsonl", [log_line(1, input_tokens=1000, output_tokens=10, cost=0.002)])
    settings = Settings(models={"gpt-4o-mini": ModelConfig(input_per_mtok=0.0, output_per_mtok=0.0)})
    report = sync_connector(engine=engine, connector=FilesConnector(name="local", options={"path": str(root)}),
                            settings=settings)
    [gap] = report.price_gaps
    assert (gap.flagged, gap.median_gap) == (1, None) and report.to_dict()["price_gaps"][0]["median_gap"] is None
    assert "charged although tokens × price is $0" in str(gap)


def test_a_sync_whose_costs_all_disagree_keeps_a_bounded_sample_of_gaps() -> None:
    """Before, every flagged gap was kept: 10M disagreeing logs held 10M floats (~350 MB) through the
    sync. Now a seeded uniform sample of GAP_SAMPLE, whose median stays close to the true one."""
    import random
    import statistics

    from trimloop.connectors.price_check import GAP_SAMPLE, PriceGap

    rng = random.Random(5)
    gaps = sorted(rng.uniform(0.1, 0.9) for _ in range(5 * GAP_SAMPLE))  # growing: a first-N sample would be low
    group = PriceGap("triage", "gpt-4o-mini")
    for gap in gaps:
        group.add_gap(gap)
    assert group.flagged == len(gaps) and len(group.gaps) == GAP_SAMPLE
    assert abs(group.median_gap - statistics.median(gaps)) < 0.01
    assert max(group.gaps) > 0.85 and min(group.gaps) < 0.15  # drawn from the whole run, not its start
    assert group.to_dict()["median_gap"] == round(group.median_gap, 4)
