"""`trimloop worker --once` and `trimloop optimize`: wiring, errors, and the result table."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from sqlmodel import select
from typer.testing import CliRunner

from tests.optimizer.conftest import gateway_for, good_gateway, good_provider, seeded, settings  # noqa: F401  (fixtures)
from trimloop.api.cli import _register, app
from trimloop.api.cli.optimize import print_run, run_summary
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.core.errors import ConfigError, Conflict, NotFound
from trimloop.core.settings import load_settings
from trimloop.core.tables import OptimizationRun, Prompt, Suggestion
from trimloop.optimizer.run import create_run, execute_run

runner = CliRunner()
_register()


@pytest.fixture
def home_engine(home_db):  # type: ignore[no-untyped-def]
    """The database the CLI will open (per test)."""
    url = load_settings().db_url
    assert url == home_db
    upgrade(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


def test_worker_once_reports_each_prompt_and_why_it_is_not_due(home_engine):
    with session_scope(home_engine) as session:
        session.add(Prompt(name="unlabelled", connector="files"))
    result = runner.invoke(app, ["worker", "--once", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["decisions"] == [{"prompt_id": 1, "prompt": "unlabelled", "due": False,
                                    "reason": "no version labelled production: label one in your prompt store, "
                                              "then sync", "code": "no_production", "deadline": None}]
    assert report["queued"] == [] and report["executed"] == []
    table = runner.invoke(app, ["worker", "--once"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "unlabelled" in table.output and "nothing to run" in table.output


def test_worker_once_with_an_empty_store_says_what_to_do(home_engine):
    result = runner.invoke(app, ["worker", "--once"])
    assert result.exit_code == 0 and "trimloop sync" in result.output


def test_optimize_an_unknown_prompt_names_the_known_ones(home_engine):
    with session_scope(home_engine) as session:
        session.add(Prompt(name="triage", connector="files"))
    result = runner.invoke(app, ["optimize", "triaje"])
    assert isinstance(result.exception, NotFound)
    assert "triaje" in result.exception.message and "triage" in result.exception.hint


def test_optimize_refuses_while_a_run_of_the_prompt_is_active(home_engine):
    with session_scope(home_engine) as session:
        prompt = Prompt(name="triage", connector="files")
        session.add(prompt)
        session.flush()
        session.add(OptimizationRun(prompt_id=prompt.id, status="running"))
    result = runner.invoke(app, ["optimize", "triage", "--budget-calls", "10"])
    assert isinstance(result.exception, Conflict) and "already queued or running" in result.exception.message


async def test_the_result_table_shows_verdict_cost_savings_and_payback(engine, settings, seeded, good_gateway):
    with session_scope(engine) as session:
        run_id = create_run(session=session, prompt_id=seeded).id
    run = await execute_run(engine=engine, settings=settings, run_id=run_id, gateway=good_gateway)
    with session_scope(engine) as session:
        suggestion = session.exec(select(Suggestion)).one()
    out = Console(record=True, width=200)
    print_run("sentiment", run, suggestion, out)
    shown = out.export_text()
    for label in ("change", "verdict: ", "non-inferior", "interval", "cost per call", "→", "projected $/month",
                  "optimization spend", "payback"):
        assert label in shown, (label, shown)
    summary = run_summary("sentiment", run, suggestion)
    assert summary["suggestion"]["cost_per_call"][1] < summary["suggestion"]["cost_per_call"][0]
    json.dumps(summary, default=str)


def test_no_suggestion_is_explained():
    run = OptimizationRun(id=3, prompt_id=1, status="succeeded", calls_made=12, spent_dollars=0.001,
                          results={"no_suggestion": "no suggestion, because every candidate was inferior"})
    out = Console(record=True, width=200)
    print_run("sentiment", run, None, out)
    shown = out.export_text()
    assert "no suggestion, because every candidate was inferior" in shown and "12 calls" in shown


def test_optimize_refuses_broken_options_before_queueing_a_run(home_engine, tmp_path):
    (tmp_path / "trimloop.toml").write_text("[prompts.triage]\nmargin = 2.0\n")
    with session_scope(home_engine) as session:
        session.add(Prompt(name="triage", connector="files"))
    result = runner.invoke(app, ["optimize", "triage"])
    assert isinstance(result.exception, ConfigError), result.output
    assert result.exception.where == "[prompts.triage].margin" and "less than 1" in result.exception.message
    with session_scope(home_engine) as session:
        assert session.exec(select(OptimizationRun)).all() == []  # checked before anything was queued
