"""`trimloop optimize` on a prompt that cannot succeed: the run ends blocked before any call, and
the command prints the root cause with its fix (and `--json` carries the outcome and findings)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.optimizer.test_preflight import seed_prompt
from trimloop.api.cli import _register, app
from trimloop.core.db import make_engine, upgrade
from trimloop.core.settings import load_settings

runner = CliRunner()
_register()


@pytest.fixture
def home_engine(home_db):  # type: ignore[no-untyped-def]
    upgrade(home_db)
    eng = make_engine(home_db)
    yield eng
    eng.dispose()


def test_optimize_names_the_real_cause_and_exits_non_zero(home_engine):
    seed_prompt(home_engine, load_settings(), name="six", model="local/gemma3-270m", distinct=6, calls=31)
    result = runner.invoke(app, ["optimize", "six"], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == "run 1 blocked before any spending:"
    assert lines[1].startswith("problem 6 distinct inputs among 31 logged calls (4 in the holdout, 2 for the search) "
                               "cannot certify anything: even a candidate that agrees with the baseline on every")
    # 915 = 549 holdout items (the plan at margin 0.02 and α 0.05 / certify_top 2) at holdout_fraction 0.6
    assert any(line.startswith("  fix: sync more logs of the production version (at least 915 distinct inputs)")
               for line in lines), result.output
    assert any(line.startswith("warning no gold answers") for line in lines), result.output

    as_json = json.loads(runner.invoke(app, ["optimize", "six", "--json"]).output)
    assert as_json["status"] == "blocked" and as_json["calls"] == 0
    assert as_json["outcome"].startswith("blocked: 6 distinct inputs")
    assert [f["code"] for f in as_json["findings"] if f["level"] == "problem"] == ["too_few_inputs"]
