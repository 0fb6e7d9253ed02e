"""`trimloop doctor`: a healthy workspace exits 0; each problem is named with its fix and exits 1."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trimloop.api.cli import _register, app
from trimloop.connectors import registry
from trimloop.connectors.files import FilesConnector
from trimloop.core.db import upgrade
from trimloop.testing.fake_openai import free_port

from tests.conftest import _two_free_ports

runner = CliRunner()
_register()

PROMPT = """---
model: {model}
params: {{temperature: 0}}
labels: [production]
---
system:
Sort support tickets into billing, bug or other. Answer with one word.

user:
Ticket: {{{{ticket}}}}
"""
PRICES = """
[models."acme/big"]
input_per_mtok = 1.0
output_per_mtok = 4.0

[models."acme/small"]
input_per_mtok = 0.1
output_per_mtok = 0.4
"""


def write_store(folder: Path, *, model: str = "acme/big", logs: int = 800, cost: bool = True,
                prompt: str = "triage") -> Path:
    (folder / "prompts" / prompt).mkdir(parents=True, exist_ok=True)
    (folder / "prompts" / prompt / "1.md").write_text(PROMPT.format(model=model))
    (folder / "logs").mkdir(exist_ok=True)
    start = datetime.now(timezone.utc) - timedelta(days=3)
    lines = [json.dumps({"id": f"{prompt}-{i}", "prompt": prompt, "version": "1", "inputs": {"ticket": f"t {i}"},
                         "output": "billing", "model": model, "input_tokens": 30, "output_tokens": 1,
                         **({"cost": 0.00003} if cost else {}), "called_at": (start + timedelta(minutes=i)).isoformat()})
             for i in range(logs)]
    if lines:
        (folder / "logs" / f"{prompt}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def write_config(tmp_path: Path, text: str, *, store: Path | None = None) -> None:
    """trimloop.toml (where TRIMLOOP_CONFIG points), on local-model ports nothing else holds."""
    connector = f'[connectors.local]\ntype = "files"\npath = "{store}"\n' if store else ""
    ports = f"[local_models]\nport = {_two_free_ports()}\n"
    (tmp_path / "trimloop.toml").write_text(f"{ports}\n{connector}\n{text}")


def doctor(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["doctor", "--json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.output)


def findings(report: dict, level: str | None = None) -> dict[str, list[dict]]:
    """code → the findings with it (of `level`, if given)."""
    out: dict[str, list[dict]] = {}
    for section in report["sections"]:
        for f in section["findings"]:
            if level is None or f["level"] == level:
                out.setdefault(f["code"], []).append(f)
    return out


def only_problem(report: dict, code: str) -> dict:
    problems = findings(report, "problem")
    assert list(problems) == [code], problems
    return problems[code][0]


HEALTHY_LOGS = 800


@pytest.fixture
def healthy(tmp_path: Path, home_db: str) -> Path:
    """A demo-like workspace: a files store with a priced production model and priced candidates,
    logs with costs, synced into a migrated database."""
    store = write_store(tmp_path / "store", logs=HEALTHY_LOGS)  # enough distinct inputs to certify at 0.02
    write_config(tmp_path, PRICES + '\n[prompts.triage]\nmodels = ["acme/small"]\n', store=store)
    assert runner.invoke(app, ["init"]).exit_code == 0
    synced = runner.invoke(app, ["sync"])
    assert synced.exit_code == 0, synced.output
    return store


def test_a_prompt_too_small_to_certify_is_named_with_what_it_needs(tmp_path: Path, home_db: str) -> None:
    """The run's own preflight, per prompt: 30 distinct inputs cannot certify at the default margin."""
    write_config(tmp_path, PRICES + '\n[prompts.triage]\nmodels = ["acme/small"]\n',
                 store=write_store(tmp_path / "store", logs=30))
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert runner.invoke(app, ["sync"]).exit_code == 0
    code, report = doctor()
    assert code == 1
    small = only_problem(report, "preflight.too_few_inputs")
    assert small["message"].startswith("triage: 30 distinct") and small["data"]["prompt"] == "triage"
    assert small["fix"]


def test_a_healthy_workspace_exits_zero_and_says_what_it_checked(healthy: Path) -> None:
    code, report = doctor()
    assert code == 0, findings(report, "problem")
    assert report["level"] in ("ok", "warning") and report["counts"]["problem"] == 0
    assert [s["name"] for s in report["sections"]] == [
        "config", "database", "egress", "connectors", "prices", "local_models", "prompts"]
    seen = findings(report, "ok")
    assert "schema at" in seen["database.ok"][0]["message"]
    reads = seen["connector.reads"][0]["message"]
    assert "local (files): reachable; 1 prompt, 1 version, 1 labelled production (triage)" in reads
    assert "0 log records since the last sync" in seen["connector.logs"][0]["message"]
    priced = {f["data"]["model"]: f for f in seen["prices.known"]}
    assert set(priced) == {"acme/big", "acme/small"}
    assert priced["acme/big"]["data"]["source"] == "custom price from settings (estimate)"
    assert "production model of triage" in priced["acme/big"]["message"]
    assert "candidate of triage" in priced["acme/small"]["message"]
    assert f"triage: production version 1 on acme/big, {HEALTHY_LOGS} logs ({HEALTHY_LOGS} of that version)" in \
        seen["prompt.ready"][0]["message"]


def test_a_prompt_whose_records_were_sampled_says_how_many_calls_they_stand_for(tmp_path: Path, home_db: str) -> None:
    """The reservoir keeps 100 records a day of the 800 calls; the aggregates still count all 800."""
    write_config(tmp_path, PRICES + "\n[reservoir]\nper_day = 100\n", store=write_store(tmp_path / "store"))
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert runner.invoke(app, ["sync"]).exit_code == 0
    _, report = doctor()
    ready = findings(report)["prompt.ready"][0]
    kept = ready["data"]["logs"]
    assert ready["data"]["calls"] == 800 and kept < 800 and ready["data"]["production_logs"] == kept
    assert f"{kept} logs ({kept} of that version; 800 calls counted, their full records sampled to these)" in \
        ready["message"]


def test_the_printed_report_groups_lines_and_shows_the_fix(healthy: Path, tmp_path: Path) -> None:
    (healthy / "prompts" / "router").mkdir()
    (healthy / "prompts" / "router" / "1.md").write_text(PROMPT.format(model="acme/big"))
    result = runner.invoke(app, ["doctor"], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    out = result.output
    assert out.index("Configuration") < out.index("Database") < out.index("Connectors") < out.index("Prompts")
    assert "problem router: trimloop has no logged call of it" in out
    assert 'fix: send its production calls where a connector reads them (files: logs/*.jsonl records with "prompt": "router"' in out
    assert "not ready: 1 problem(s)" in out


def test_a_config_that_does_not_load_is_named_with_where_and_how(tmp_path: Path) -> None:
    (tmp_path / "trimloop.toml").write_text("[gateway]\nconcurrency = 0\n")
    code, report = doctor()
    assert code == 1 and [s["name"] for s in report["sections"]] == ["config"]
    bad = only_problem(report, "config.invalid")
    assert "gateway.concurrency" in bad["message"] and str(tmp_path / "trimloop.toml") in bad["message"]
    assert "fix the named keys in trimloop.toml" in bad["fix"]
    (tmp_path / "trimloop.toml").write_text("[connectors.local\ntype = 'files'\n")
    code, report = doctor()
    assert code == 1 and "cannot read the config file" in only_problem(report, "config.invalid")["message"]
    assert "check the TOML syntax" in only_problem(report, "config.invalid")["fix"]


def test_bad_run_options_of_a_prompt_are_named_with_their_key(healthy: Path, tmp_path: Path) -> None:
    write_config(tmp_path, PRICES + '\n[prompts.triage]\nmodels = ["acme/small"]\nmargin = 2\n', store=healthy)
    code, report = doctor()
    bad = only_problem(report, "prompt.bad_options")
    assert code == 1 and bad["message"].startswith("triage: [prompts.triage].margin: margin:")
    assert bad["fix"]


def test_an_unreachable_connector_is_named_without_its_credentials(healthy: Path, tmp_path: Path) -> None:
    port = free_port()
    write_config(tmp_path, PRICES + f'\n[connectors.ml]\ntype = "mlflow"\n'
                 f'url = "http://admin:S3CRET@127.0.0.1:{port}/?token=T0KEN"\n', store=healthy)
    code, report = doctor()
    assert code == 1
    down = only_problem(report, "connector.unreachable")
    assert down["message"].startswith("ml (mlflow): cannot be read") and "cannot reach" in down["message"]
    assert f"127.0.0.1:{port}" in down["message"] and down["fix"]
    assert "S3CRET" not in json.dumps(report) and "T0KEN" not in json.dumps(report)


def test_an_unknown_production_price_is_named_with_the_config_to_set_it(tmp_path: Path, home_db: str) -> None:
    store = write_store(tmp_path / "store", model="selfhosted/llama-70b", cost=False)
    write_config(tmp_path, PRICES + '\n[prompts.triage]\nmodels = ["acme/small"]\n', store=store)
    assert runner.invoke(app, ["init"]).exit_code == 0
    code, report = doctor()
    assert code == 1
    unknown = only_problem(report, "prices.unknown")
    assert unknown["message"].startswith("the price of selfhosted/llama-70b is unknown and the logs of triage "
                                         "carry no cost")
    assert '[models."selfhosted/llama-70b"]\ninput_per_mtok = <USD per 1M input tokens>' in unknown["fix"]
    # with the logged cost standing in, the same gap is a warning
    write_store(tmp_path / "store", model="selfhosted/llama-70b", cost=True)
    code, report = doctor("--full")
    assert code == 0 and "prices.unknown_logged" in findings(report, "warning")


def test_a_model_whose_key_variable_is_unset_is_a_warning(healthy: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_API_KEY", raising=False)
    write_config(tmp_path, PRICES.replace('input_per_mtok = 0.1', 'api_key_env = "ACME_API_KEY"\ninput_per_mtok = 0.1')
                 + '\n[prompts.triage]\nmodels = ["acme/small"]\n', store=healthy)
    code, report = doctor()
    missing = findings(report, "warning")["prices.key_missing"][0]
    assert missing["message"].startswith("acme/small: its key variable ACME_API_KEY is not set")
    # triage's only candidate is that model, so a run of it would be blocked: the preflight says so
    assert code == 1 and list(findings(report, "problem")) == ["preflight.no_candidate_model"]
    monkeypatch.setenv("ACME_API_KEY", "sk-S3CRET")
    code, report = doctor()
    assert "prices.key_missing" not in findings(report) and "S3CRET" not in json.dumps(report)


def test_postgresql_with_autovacuum_off_is_a_warning_and_sqlite_never(healthy: Path, home_db: str) -> None:
    code, report = doctor()
    warned = findings(report, "warning").get("database.autovacuum_off", [])
    if home_db.startswith("sqlite"):
        assert warned == []
        return
    from sqlalchemy import create_engine

    engine = create_engine(home_db)
    try:
        with engine.connect() as conn:
            off = conn.exec_driver_sql("SHOW autovacuum").scalar() == "off"
    finally:
        engine.dispose()
    # the server's own setting decides (the test machines run with it off, PostgreSQL's default is on)
    assert len(warned) == (1 if off else 0) and code == 0
    if off:
        assert "autovacuum = on" in warned[0]["fix"] and "never reclaimed" in warned[0]["message"]


def test_a_database_behind_its_migrations_is_named_and_left_alone(tmp_path: Path, home_db: str) -> None:
    upgrade(home_db, "0005")
    write_config(tmp_path, PRICES, store=write_store(tmp_path / "store"))
    code, report = doctor()
    assert code == 1
    behind = only_problem(report, "database.migrations_behind")
    from alembic.script import ScriptDirectory

    from trimloop.core.db import alembic_config
    script = ScriptDirectory.from_config(alembic_config(home_db))
    after = len(list(script.iterate_revisions(script.get_current_head(), "0005")))  # the revisions above 0005
    assert "at revision 0005" in behind["message"] and f"{after} migrations to apply" in behind["message"]
    assert "trimloop init" in behind["fix"]
    assert "prompts.store_not_read" in findings(report, "warning")  # judged from the connector alone
    assert "triage: 800 logged calls wait for the next sync" in findings(report, "warning")["prompt.not_synced"][0]["message"]
    code, report = doctor()
    assert "at revision 0005" in only_problem(report, "database.migrations_behind")["message"]  # nothing migrated


def test_hosts_outside_allowed_hosts_are_named_each_with_the_line_to_add(healthy: Path, tmp_path: Path) -> None:
    write_config(tmp_path, PRICES.replace('input_per_mtok = 0.1', 'api_base = "https://llm.corp.example/v1"\n'
                                          'input_per_mtok = 0.1')
                 + '\n[connectors.ml]\ntype = "mlflow"\nurl = "http://mlflow.internal:5000"\n', store=healthy)
    code, report = doctor()
    assert code == 1
    refused = findings(report, "problem")
    assert list(refused) == ["egress.refused"]
    by_key = {f["data"]["key"]: f for f in refused["egress.refused"]}
    assert set(by_key) == {'models."acme/small".api_base', "[connectors.ml] url"}
    assert 'add "mlflow.internal:5000"' in by_key["[connectors.ml] url"]["fix"]
    assert 'add "llm.corp.example:443"' in by_key['models."acme/small".api_base']["fix"]
    assert "config.read" in findings(report, "ok")  # the rest of the config was still checked
    assert "ml (mlflow): not read" in findings(report, "warning")["connector.not_read"][0]["message"]


def test_a_production_prompt_without_logs_is_a_problem_and_skipped_logs_say_why(tmp_path: Path, home_db: str) -> None:
    store = write_store(tmp_path / "store", logs=0)
    (store / "logs" / "other.jsonl").write_text(json.dumps(
        {"id": "x-1", "prompt": "triag", "inputs": {"ticket": "t"}, "output": "bug", "model": "acme/big",
         "called_at": datetime.now(timezone.utc).isoformat()}) + "\n")
    write_config(tmp_path, PRICES + '\n[prompts.triage]\nmodels = ["acme/small"]\n', store=store)
    assert runner.invoke(app, ["init"]).exit_code == 0
    code, report = doctor()
    assert code == 1
    none = only_problem(report, "prompt.no_logs")
    assert none["message"] == "triage: trimloop has no logged call of it, so there is nothing to optimize on"
    skipped = findings(report, "warning")["connector.logs_skipped"][0]
    assert skipped["data"]["reason"] == "unknown_prompt" and "log refers to unknown prompt 'triag'" in skipped["message"]
    assert "known prompts: triage" in skipped["fix"]


def test_logs_not_synced_yet_are_counted_before_the_first_sync(tmp_path: Path, home_db: str) -> None:
    store = write_store(tmp_path / "store", logs=12)
    write_config(tmp_path, PRICES + '\n[prompts.triage]\nmodels = ["acme/small"]\n[prompts.triagee]\nmargin = 0.05\n',
                 store=store)
    code, report = doctor()  # no database yet (PostgreSQL: an empty one): nothing is created
    warned = findings(report, "warning")
    assert code == 0
    assert not (tmp_path / "home" / "trimloop.db").exists()
    assert {"database.missing", "database.empty"} & set(warned)
    assert "12 logged calls wait for the next sync" in warned["prompt.not_synced"][0]["message"]
    assert "[prompts.triagee] in trimloop.toml names no prompt" in warned["prompts.unknown_section"][0]["message"]
    assert "12 would be stored (triage 12)" in findings(report, "ok")["connector.logs"][0]["message"]


class Broken(FilesConnector):
    """A connector plugin with a bug."""

    type = "broken"

    def read_prompts(self):  # type: ignore[no-untyped-def]
        raise KeyError("model")


def test_a_connector_that_crashes_is_one_problem_not_a_crashed_doctor(healthy: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "available", lambda: {**dict(registry.BUILTINS), "broken": f"{__name__}:Broken"})
    write_config(tmp_path, PRICES + f'\n[connectors.plugin]\ntype = "broken"\npath = "{healthy}"\n', store=healthy)
    code, report = doctor()
    failed = only_problem(report, "connector.failed")
    assert code == 1 and failed["message"] == "plugin (broken): reading it raised KeyError: 'model'"
    assert "local (files): reachable" in findings(report, "ok")["connector.reads"][0]["message"]  # the others still read
