"""End to end on the files connector: sync → optimize (real gateway, fake provider) → suggestion → approve →
deploy writes a version file under `staging` → promote → new logs of that version → the savings
report shows realized savings next to the projection. Also: the run's event stream and cancel."""

import json
import random
import threading
import time
from datetime import timedelta

import pytest
import yaml
from fastapi.testclient import TestClient

from trimloop.api.app import create_app
from trimloop.core.catalog import resolve_model
from trimloop.core.gateway import Gateway
from trimloop.core.settings import Settings
from trimloop.core.tables import utcnow
from trimloop.testing.fake_provider import FakeProvider
from trimloop.testing.sentiment import VERBOSE, classify, prompt_text, review

PARAMS = {"max_tokens": 3, "temperature": 0}


def log_lines(settings, version, model, start, n, offset=0, cost=None):
    rng = random.Random(7 + offset)
    price = cost if cost is not None else resolve_model(settings, model).price(160, 1)
    lines = []
    for i in range(offset, offset + n):
        text, label = review(rng, i)
        lines.append(json.dumps({"id": f"call-{version}-{i}", "prompt": "sentiment", "version": version,
                                 "inputs": {"text": text}, "output": f" {label}", "model": model,
                                 "input_tokens": 160, "output_tokens": 1, "cost": price, "latency_s": 0.3,
                                 "called_at": (start + timedelta(hours=3 * (i - offset))).isoformat()}))
    return "\n".join(lines) + "\n"


@pytest.fixture
def e2e(tmp_path):
    folder = tmp_path / "store"
    (folder / "prompts" / "sentiment").mkdir(parents=True)
    (folder / "logs").mkdir()
    front = yaml.safe_dump({"model": "local/gemma3-270m", "params": PARAMS, "labels": ["production"]})
    (folder / "prompts" / "sentiment" / "1.md").write_text(f"---\n{front}---\n{VERBOSE}\n")
    settings = Settings(home=tmp_path / "home", connectors={"local": {"type": "files", "path": str(folder)}},
                        prompts={"sentiment": {"rungs": [8, 24], "dataset_size": 200, "holdout_fraction": 0.6}})
    (folder / "logs" / "june.jsonl").write_text(
        log_lines(settings, "1", "local/gemma3-270m", utcnow() - timedelta(days=27), 200))
    return folder, settings


def gateway_for(settings, engine, threads=None):
    """The real gateway over `engine`'s response cache; a fake provider answers like a model."""

    def answer(model, prompt):
        if threads is not None:
            threads.add(threading.current_thread().name)
        return classify(prompt_text(prompt))

    return Gateway(settings, engine=engine, provider=FakeProvider(responder=answer))


def wait_for(client, run_id, headers, statuses=("succeeded", "failed", "cancelled")):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}", headers=headers).json()
        if run["status"] in statuses:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {run['status']}")


def test_sync_optimize_approve_deploy_promote_realize(e2e, engine, headers):
    folder, settings = e2e
    threads: set[str] = set()
    with TestClient(create_app(settings, engine, gateway=gateway_for(settings, engine, threads))) as client:
        eng, rev, fin = headers["engineer"], headers["reviewer"], headers["viewer"]
        assert client.post("/connectors/sync", json={}, headers=eng).json()[0]["logs_added"] == 200
        prompt_id = client.get("/prompts", headers=fin).json()[0]["id"]
        started = client.post("/runs", json={"prompt_id": prompt_id, "budget_dollars": 5.0,
                                             "config": {"margin": 0.05}}, headers=eng)
        assert started.status_code == 202 and started.json()["status"] == "queued"
        run = wait_for(client, started.json()["id"], fin)
        assert run["status"] == "succeeded", run["error"]
        assert run["events"] > 3 and 0 < run["budget_used"] < 1
        stream = client.get(f"/runs/{run['id']}/events", headers=fin)
        assert stream.headers["content-type"].startswith("text/event-stream")
        kinds = [line[len("event: "):] for line in stream.text.splitlines() if line.startswith("event: ")]
        assert kinds[:4] == ["run.queued", "run.candidates", "run.claimed", "run.started"] and kinds[-1] == "end", kinds
        assert {"dataset.ready", "candidate.proposed"} <= set(kinds), kinds

        assert "suggestion_id" in run["results"], (run["results"].get("no_suggestion"), kinds)
        # The run executed on a thread of its own, never on the server's event loop.
        assert threads == {f"trimloop-run-{run['id']}"}, threads
        [suggestion] = client.get("/suggestions", params={"status": "pending"}, headers=fin).json()
        projected = suggestion["projected_monthly_savings"]
        assert projected > 0
        # The rows behind the evidence: every holdout item the candidate was tested on, both arms.
        evidence = client.get(f"/suggestions/{suggestion['id']}", headers=fin).json()["evidence"]
        rows = client.get(f"/suggestions/{suggestion['id']}/items", params={"limit": 1000}, headers=fin).json()
        assert rows["total"] == len(rows["items"]) == evidence["n"]
        assert (rows["baseline_eval_run_id"], rows["candidate_eval_run_id"]) == (
            evidence["baseline_eval_run_id"], evidence["candidate_eval_run_id"])
        first = rows["items"][0]
        assert first["inputs"]["text"] and first["baseline"]["cached"] and len(first["candidate"]) == 1
        assert set(first["candidate"][0]["scores"]) == set(evidence["evaluators"])
        assert first["candidate"][0]["cost"] < first["baseline"]["cost"]
        differing = client.get(f"/suggestions/{suggestion['id']}/items", params={"differing": True}, headers=fin).json()
        assert all(item["differs"] for item in differing["items"])
        assert differing["total"] == sum(item["differs"] for item in rows["items"])
        assert client.post(f"/suggestions/{suggestion['id']}/approve", headers=rev).status_code == 200
        deployed = client.post(f"/suggestions/{suggestion['id']}/deploy", headers=eng).json()
        assert deployed["label"] == "staging" and (folder / "prompts" / "sentiment" / "2.md").exists()
        assert yaml.safe_load((folder / "prompts" / "sentiment" / "labels.yaml").read_text()) == \
            {"production": "1", "staging": "2"}
        assert client.post(f"/suggestions/{suggestion['id']}/promote", headers=eng).status_code == 200
        assert yaml.safe_load((folder / "prompts" / "sentiment" / "labels.yaml").read_text())["production"] == "2"

        detail = client.get(f"/suggestions/{suggestion['id']}", headers=fin).json()
        new_model = detail["candidate"]["model"]
        with (folder / "logs" / "june.jsonl").open("a") as handle:  # production now calls version 2
            handle.write(log_lines(settings, "2", new_model, utcnow() + timedelta(seconds=1), 40, offset=500,
                                     cost=detail["candidate_cost_per_call"]))
        assert client.post("/connectors/sync", json={}, headers=eng).json()[0]["logs_added"] == 40

        report = client.get("/reports/savings", headers=fin).json()
        [realized] = report["realized"]
        assert realized["suggestion_id"] == suggestion["id"] and realized["realized_calls"] == 40
        assert realized["projected_monthly_savings"] == pytest.approx(projected)
        assert realized["realized_cost_per_call"] < realized["baseline_cost_per_call"]
        assert realized["realized_savings_to_date"] == pytest.approx(
            40 * (realized["baseline_cost_per_call"] - realized["realized_cost_per_call"]))
        assert realized["realized_monthly_savings"] > 0
        csv = client.get("/reports/savings", params={"format": "csv"}, headers=fin)
        assert csv.headers["content-type"].startswith("text/csv")
        assert any(line.startswith("realized,") for line in csv.text.splitlines())


def test_cancel_a_queued_run_and_cancel_is_idempotent(e2e, engine, headers):
    _, settings = e2e
    with TestClient(create_app(settings, engine, gateway=gateway_for(settings, engine))) as client:
        client.post("/connectors/sync", json={}, headers=headers["engineer"])
        prompt_id = client.get("/prompts", headers=headers["viewer"]).json()[0]["id"]
        from trimloop.core.db import session_scope
        from trimloop.optimizer.run import create_run

        with session_scope(engine) as session:  # queued but not scheduled: what a restart leaves
            run_id = create_run(session=session, prompt_id=prompt_id, config={}, budget_calls=10).id
        first = client.post(f"/runs/{run_id}/cancel", headers=headers["engineer"])
        assert first.status_code == 200 and first.json()["status"] == "cancelled"
        assert client.post(f"/runs/{run_id}/cancel", headers=headers["engineer"]).status_code == 200
        events = client.get(f"/runs/{run_id}/events", headers=headers["viewer"])
        assert events.text.strip().endswith('data: {"status": "cancelled"}')

