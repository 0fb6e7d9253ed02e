"""The `trimloop` command: init, models list, call (fake server and the real bundled model)."""

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from trimloop.api.cli import _register, app
from trimloop.core.db import make_engine
from trimloop.testing.fake_openai import free_port

runner = CliRunner()
_register()


def test_init_writes_config_and_database(tmp_path, home_db):
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "trimloop.toml").read_text().startswith("# trimloop configuration")
    engine = make_engine(home_db)
    try:
        assert {"prompt", "optimizationrun", "alembic_version"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    again = runner.invoke(app, ["init"])
    assert "kept existing" in again.output


def test_optimize_help_shows_the_defaults_a_run_uses():
    """The help reads the margin and the call budget from where runs take them, not from literals."""
    from trimloop.core.defaults import DEFAULT_MARGIN
    from trimloop.optimizer.config import RunConfig

    shown = runner.invoke(app, ["optimize", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"non-inferiority margin (default {DEFAULT_MARGIN:g})" in shown.output
    assert f"cap on LLM calls (default {RunConfig().budget_calls})" in shown.output


def test_tokens_create_with_an_expiry_and_list_it(tmp_path, home_db):
    assert runner.invoke(app, ["init"]).exit_code == 0
    made = runner.invoke(app, ["tokens", "create", "--role", "viewer", "--name", "ci", "--expires-days", "90"])
    assert made.exit_code == 0, made.output
    assert "expires 20" in made.output and made.output.strip().splitlines()[-1].startswith("tlk_")
    listed = runner.invoke(app, ["tokens", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "ci" in listed.output and "expires" in listed.output
    refused = runner.invoke(app, ["tokens", "create", "--role", "viewer", "--name", "x", "--expires-days", "0"])
    assert refused.exit_code != 0 and "at most 3650 days" in str(refused.exception)  # `main` prints it with its hint
    assert "--expires-days 90" in refused.exception.hint


def test_models_list_shows_prices_and_sources(tmp_path):
    (tmp_path / "trimloop.toml").write_text('[models."acme/m"]\napi_base = "http://127.0.0.1:9/v1"\ninput_per_mtok = 2.5\noutput_per_mtok = 10\n')
    result = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "local/smollm2-135m" in result.output and "local/gemma3-270m" in result.output
    assert "acme/m" in result.output and "2.5" in result.output and "custom price from settings" in result.output
    assert "per billion parameters" in result.output


def test_models_list_classes_shows_every_token_class_and_its_source(tmp_path):
    (tmp_path / "trimloop.toml").write_text('[models."gpt-4.1-mini"]\ncache_read_per_mtok = 0.05\n'
                                            '[models."acme/mystery"]\napi_base = "http://127.0.0.1:9/v1"\n')
    result = runner.invoke(app, ["models", "list", "--classes"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    read = next(line for line in lines if "gpt-4.1-mini" in line and "cache_read" in line)
    assert "0.05" in read and 'settings: models."gpt-4.1-mini".cache_read_per_mtok' in read
    batch = next(line for line in lines if "gpt-4.1-mini" in line and "batch_input" in line)
    assert "0.2" in batch and "input_cost_per_token_batches" in batch
    unknown = next(line for line in lines if "acme/mystery" in line and "│ input" in line)
    assert "unknown" in unknown


def _cli(*args, env):
    return subprocess.run([sys.executable, "-c", "from trimloop.api.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_call_through_a_fake_server_then_cache(tmp_path, home_db):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "trimloop.testing.fake_openai", "--port", str(port)])
    try:
        (tmp_path / "trimloop.toml").write_text(
            f'[models."fake/m"]\napi_base = "http://127.0.0.1:{port}/v1"\ninput_per_mtok = 1\noutput_per_mtok = 2\n'
        )
        env = dict(os.environ)
        first = second = None
        for _ in range(50):
            first = _cli("call", "fake/m", "hello there", "--json", env=env)
            if first.returncode == 0:
                break
        assert first is not None and first.returncode == 0, first.stderr
        second = _cli("call", "fake/m", "hello there", "--json", env=env)
        one, two = json.loads(first.stdout), json.loads(second.stdout)
        assert one["output"] == "echo: hello there" and not one["cached"] and one["spent"] > 0
        assert two["cached"] and two["spent"] == 0 and two["cost"] == one["cost"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_user_error_prints_hint_without_traceback(home_db):
    result = _cli("call", "local/nope", "x", env=dict(os.environ))
    assert result.returncode == 1
    assert "unknown local model 'local/nope'" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_is_reported_with_the_file(tmp_path):
    (tmp_path / "trimloop.toml").write_text("[gateway]\nconcurrency = -1\n")
    result = _cli("models", "list", env=dict(os.environ))
    assert result.returncode == 1 and "gateway.concurrency" in result.stderr
    assert str(tmp_path / "trimloop.toml") in result.stderr and "Traceback" not in result.stderr


@pytest.mark.integration
def test_call_the_bundled_model_twice(tmp_path, home_db):
    """The README's first command: a real completion, then a cache hit with no new spend."""
    env = dict(os.environ, TRIMLOOP_LOCAL_MODELS__PORT=str(free_port()))
    first = _cli("call", "local/smollm2-135m", "Say hi", "--max-tokens", "16", env=env)
    assert first.returncode == 0, first.stderr
    assert "local/smollm2-135m" in first.stdout and "tokens" in first.stdout and "spent $" in first.stdout
    second = _cli("call", "local/smollm2-135m", "Say hi", "--max-tokens", "16", "--json", env=env)
    data = json.loads(second.stdout)
    assert data["cached"] and data["spent"] == 0 and data["output"].strip()
