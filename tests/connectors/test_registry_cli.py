"""Connector registry (built-ins + entry points) and the `trimloop sync` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.connectors.helpers import log_line, make_store, write_logs
from trimloop.connectors import registry
from trimloop.connectors.files import FilesConnector
from trimloop.core.errors import ConfigError
from trimloop.core.settings import ConnectorConfig, load_settings

PLUGIN = '''
from trimloop.connectors.base import Checkpoint, Connector

class EmptyConnector(Connector):
    type = "empty"
    def read_prompts(self):
        return iter(())
    def read_logs(self, *, cursor):
        yield Checkpoint("done")
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party package registering `empty` under the trimloop.connectors entry points."""
    site = tmp_path / "site"
    (site / "trimloop_empty-0.1.dist-info").mkdir(parents=True)
    (site / "trimloop_empty.py").write_text(PLUGIN, encoding="utf-8")
    (site / "trimloop_empty-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: trimloop-empty\nVersion: 0.1\n", encoding="utf-8")
    (site / "trimloop_empty-0.1.dist-info" / "entry_points.txt").write_text(
        "[trimloop.connectors]\nempty = trimloop_empty:EmptyConnector\n"
        "files = trimloop_empty:EmptyConnector\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    registry.available.cache_clear()
    yield
    registry.available.cache_clear()


def test_builtins_are_available_without_installing() -> None:
    assert registry.load("files") is FilesConnector


def test_a_plugin_registers_through_entry_points_but_cannot_shadow_a_builtin(plugin: None) -> None:
    connector = registry.create("mine", ConnectorConfig(type="empty"))
    assert connector.type == "empty" and connector.name == "mine"
    assert registry.load("files") is FilesConnector


def test_unknown_type_and_unknown_name_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown connector type 'nope'"):
        registry.create("x", ConnectorConfig(type="nope"))
    settings = load_settings(connectors={"local": {"type": "files", "path": "."}})
    with pytest.raises(ConfigError, match="no connector named 'other'"):
        registry.from_settings(settings, ["other"])


def test_read_only_write_back_says_so(plugin: None) -> None:
    connector = registry.create("mine", ConnectorConfig(type="empty"))
    with pytest.raises(Exception, match="read-only"):
        connector.move_label(prompt="p", external_version="1", label="production")


def test_sync_command_prints_the_report(tmp_path: Path, home_db: str) -> None:
    from trimloop.api.cli.sync import sync

    root = make_store(tmp_path / "store")
    write_logs(root / "logs" / "calls.jsonl", [log_line(1), "{oops", log_line(2, prompt="ghost")])
    (tmp_path / "trimloop.toml").write_text(
        f'[connectors.local]\ntype = "files"\npath = "{root}"\n', encoding="utf-8")
    app = typer.Typer()
    app.command()(sync)
    result = CliRunner().invoke(app, [], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "local" in result.output and "logs/calls.jsonl:2" in result.output
    assert "unknown prompt 'ghost'" in result.output and "skipped 2" in result.output
