"""`trimloop optimize NAME --repair` on a broken prompt: the repair suggestion with its gain, its
interval and its cost change, as JSON and as a table; without --repair the run still ends
`baseline_unhealthy` and says how to ask for a repair. Calls go through the real Gateway to a
fake provider that answers right once the prompt states the allowed answers."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.api.test_prompt_health import NoModels
from tests.evals.health_seed import LABELS, seed_triage
from tests.optimizer.test_repair import follows_the_format
from trimloop.api.cli import _register, app
from trimloop.core.db import make_engine, upgrade
from trimloop.core.gateway import Gateway
from trimloop.testing.fake_provider import NOWHERE, FakeProvider

runner = CliRunner()
_register()

TOML = f"""
[models."fake/big"]
api_base = "{NOWHERE}"
input_per_mtok = 50
output_per_mtok = 100

[models."fake/small"]
api_base = "{NOWHERE}"
input_per_mtok = 5
output_per_mtok = 10

[prompts.triage]
expected_from = "label"
rungs = [8, 24]
dataset_size = 200
holdout_fraction = 0.6
margin = 0.05
models = ["fake/small"]
evaluators = {{label = {{labels = {json.dumps(LABELS)}}}}}
"""


def test_optimize_repair_prints_the_gain_and_the_cost_change(home_db, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    (tmp_path / "trimloop.toml").write_text(TOML)
    upgrade(home_db)
    engine = make_engine(home_db)
    try:
        seed_triage(engine, quality="broken")
    finally:
        engine.dispose()
    provider = FakeProvider(responder=follows_the_format)
    monkeypatch.setattr("trimloop.api.cli.optimize.real_gateway",
                        lambda s, e: (Gateway(s, engine=e, provider=provider), NoModels()))
    plain = runner.invoke(app, ["optimize", "triage", "--json"])
    assert plain.exit_code == 1 and json.loads(plain.output)["status"] == "baseline_unhealthy"
    assert "--repair" in json.loads(plain.output)["no_suggestion"] and provider.attempts == 0

    result = runner.invoke(app, ["optimize", "triage", "--repair", "--min-effect", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["status"] == "succeeded" and out["repair"]["certified"] and out["repair"]["min_effect"] == 0.1
    s = out["suggestion"]
    assert s["kind"] == "repair" and s["evaluators"]["label"]["verdict"] == "superior"
    gain = s["repair"]["gains"]["label"]
    assert gain["min_effect"] == 0.1 and gain["lower"] > 0.1 and gain["after"] > gain["before"]
    assert "cost_change" in s["repair"] and out["outcome"].startswith(f"suggestion #{s['id']}: repair: label +")

    shown = runner.invoke(app, ["optimize", "triage", "--repair"], env={"COLUMNS": "300"})
    assert shown.exit_code == 0, shown.output
    assert "repair: better quality, certified by the superiority test" in shown.output
    assert "superior (Δ +" in shown.output and "min effect 0.05" in shown.output
