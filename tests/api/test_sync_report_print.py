"""`trimloop sync`'s printed report: where each connector looked, and a notice with its fix."""

from __future__ import annotations

from rich.console import Console

from trimloop.api.cli.sync import print_reports
from trimloop.api.schemas import SyncReportPublic
from trimloop.connectors.base import Looked, Problem
from trimloop.connectors.sync import SyncReport


def test_the_report_says_where_it_looked_and_how_to_find_the_traces() -> None:
    notice = Problem("http://mlflow:5000 experiment 'Default' (id 0)",
                     "holds no traces; traces are in experiment 'support-bot' (id 1): 31 traces", "traces_elsewhere",
                     'set experiment_ids = ["0", "1"] under [connectors.ml], or remove experiment_ids')
    report = SyncReport(connector="ml", looked=[Looked("experiment 'Default' (id 0)", 0, notice)])
    out = Console(record=True, width=400)
    print_reports([report], out)
    printed = out.export_text()
    assert "ml looked in: experiment 'Default' (id 0): 0 read" in printed
    assert ("ml: http://mlflow:5000 experiment 'Default' (id 0): holds no traces; traces are in experiment "
            "'support-bot' (id 1): 31 traces") in printed
    assert 'hint: set experiment_ids = ["0", "1"] under [connectors.ml], or remove experiment_ids' in printed
    public = SyncReportPublic(**report.to_dict())  # what POST /connectors/sync answers
    assert public.looked == ["experiment 'Default' (id 0): 0 read"] and public.notices == [str(notice)]
    assert report.skipped_total == 0  # a notice skips no record


def test_skipped_records_and_a_failure_print_their_brackets_verbatim() -> None:
    """Square brackets in a problem (`[connectors.ml]`, a JSON path) are text, not rich markup."""
    from collections import Counter

    problem = Problem("logs/[2026-12].jsonl line 3", "field [cost] is not a number", "invalid",
                      "fix it under [connectors.ml] in trimloop.toml")
    report = SyncReport(connector="ml", skipped=Counter({"invalid": 1}), problems=[problem],
                        fatal="cannot reach [bold]http://mlflow:5000[/bold]")
    out = Console(record=True, width=400)
    print_reports([report], out)
    printed = out.export_text()
    assert "logs/[2026-12].jsonl line 3: field [cost] is not a number" in printed
    assert "hint: fix it under [connectors.ml] in trimloop.toml" in printed
    assert "ml failed: cannot reach [bold]http://mlflow:5000[/bold]" in printed
