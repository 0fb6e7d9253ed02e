"""egress_targets and load_settings(check_egress=False): how `trimloop doctor` reads a config whose
URLs allowed_hosts refuses, to report each one instead of stopping at the first."""

from __future__ import annotations

from pathlib import Path

import pytest

from trimloop.core.errors import ConfigError
from trimloop.core.settings import egress_targets, load_settings

CONFIG = """
[models."acme/m"]
api_base = "https://llm.corp.example/v1"

[connectors.ml]
type = "mlflow"
url = "http://mlflow.internal:5000"
path = "not-a-url-option"

[[webhooks]]
url = "http://127.0.0.1:9000/hook"
"""


def test_refused_urls_stop_the_config_unless_the_caller_checks_them(tmp_path: Path) -> None:
    (tmp_path / "trimloop.toml").write_text(CONFIG)
    with pytest.raises(ConfigError, match="llm.corp.example"):
        load_settings()
    settings = load_settings(check_egress=False)
    assert egress_targets(settings) == [
        ("webhook 1", "webhooks[0].url", "http://127.0.0.1:9000/hook"),
        ("model 'acme/m'", 'models."acme/m".api_base', "https://llm.corp.example/v1"),
        ("connector 'ml' (mlflow)", "[connectors.ml] url", "http://mlflow.internal:5000"),
    ]
    assert [t[1] for t in egress_targets(settings, connectors=False)] == ["webhooks[0].url", 'models."acme/m".api_base']
    with pytest.raises(ConfigError):  # the relaxed read does not leak into the next one
        load_settings()
