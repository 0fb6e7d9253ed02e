"""The phoenix connector against a real Phoenix server: seed with Phoenix's client and a real
OpenInference instrumentation, sync, check every field, write back, read back with the tag moved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.connectors.helpers import labels_by_version, stored_json
from tests.connectors.servers import free_port, running
from trimloop.connectors.phoenix import PhoenixConnector
from trimloop.core.catalog import count_message_tokens
from trimloop.connectors.sync import sync_connector
from trimloop.core.templates import Template

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


def test_sync_write_back_and_promote_against_phoenix(phoenix_server: tuple[str, Path], engine: Engine,
                                                     tmp_path: Path) -> None:
    url, python = phoenix_server
    port = free_port()
    # billing like OpenAI, with a cache minimum small enough for the short system prompt: the second
    # call reads 16 prompt tokens from the cache; every answer carries 2 reasoning tokens
    with running([sys.executable, "-m", "trimloop.testing.fake_openai", "--port", str(port), "--prompt-cache",
                  "openai", "--cache-minimum", "16", "--reasoning-tokens", "2"],
                 health=f"http://127.0.0.1:{port}/v1/models", env={"PYTHONPATH": str(HERE.parent.parent)},
                 log=tmp_path / "fake.log", timeout_s=30):
        seeded = subprocess.run([str(python), str(HERE / "phoenix_seed.py"), url, f"http://127.0.0.1:{port}/v1"],
                                capture_output=True, text=True, timeout=180, check=True)
    seed = json.loads(seeded.stdout.strip().splitlines()[-1])
    connector = PhoenixConnector(name="px", options={"url": url})

    report = sync_connector(engine=engine, connector=connector)
    assert report.fatal is None and report.skipped_total == 0, report.to_dict()
    assert (report.prompts_added, report.versions_added, report.logs_added) == (1, 2, 2)
    with engine.connect() as conn:
        versions = conn.execute(text("select external_version, id, model from promptversion order by id")).all()
        logs = conn.execute(text("select l.external_id, l.inputs, l.output, l.model, l.input_tokens, l.output_tokens, "
                                 "l.latency_s, l.feedback, v.external_version, l.cached_input_tokens, "
                                 "l.reasoning_tokens from logrecord l "
                                 "join promptversion v on v.id = l.version_id order by l.called_at")).all()
    labels = labels_by_version(engine)
    assert {v[0]: (labels[v[1]], v[2]) for v in versions}[seed["first_version"]] == (["production"], "gpt-4o-mini")
    assert {log[0] for log in logs} == set(seed["span_ids"])
    by_ticket = {stored_json(log[1])["ticket"]: log for log in logs}
    charged = by_ticket["I was charged twice"]
    prompt_tokens = count_message_tokens([{"role": "system", "content": "You sort support tickets into billing, "
                                                                    "bug or other."},
                                          {"role": "user", "content": "Ticket: I was charged twice"}])
    assert charged[2] == "echo: Ticket: I was charged twice" and charged[3:6] == ("gpt-4o-mini", prompt_tokens, 4 + 2)
    assert charged[10] == 2 and by_ticket["The app crashes on start"][10] == 2  # reasoning, part of output
    assert (charged[9], by_ticket["The app crashes on start"][9]) == (0, 16)  # the second call hit the cache
    assert charged[6] > 0 and charged[8] == seed["first_version"]  # matched by its messages
    feedback = [stored_json(log[7]) for log in logs if log[0] == seed["span_ids"][0]][0]
    assert feedback == [{"name": "correct", "value": 1.0, "source": "human"}]
    assert sync_connector(engine=engine, connector=connector).logs_added == 0

    result = connector.write_version(prompt="triage", template=Template.chat(("user", "Sort: {{ticket}}")),
                                     model="gpt-4o-mini", params={"temperature": 0.0}, label="staging")
    assert result.created
    staged = httpx.get(f"{url}/v1/prompts/triage/tags/staging").json()["data"]
    assert staged["id"] == result.external_version
    assert staged["template"]["messages"] == [{"role": "user", "content": "Sort: {{ticket}}"}]
    connector.move_label(prompt="triage", external_version=result.external_version, label="production")
    assert httpx.get(f"{url}/v1/prompts/triage/tags/production").json()["data"]["id"] == result.external_version
    after = sync_connector(engine=engine, connector=connector)
    assert after.versions_added == 1 and after.labels_changed == 1
    connector.close()
