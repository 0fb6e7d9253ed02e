"""The review workflow over HTTP: queue, evidence, approve, deploy to staging, promote, roll back."""

import yaml

from tests.api.conftest import make_suggestion, synced
from trimloop.connectors.sync import sync


def labels_shown(client, headers, prompt_id):
    """external version → the labels the API shows on it."""
    versions = client.get(f"/prompts/{prompt_id}/versions", headers=headers["viewer"]).json()
    return {v["external_version"]: v["labels"] for v in versions}


def test_approve_deploy_promote_rollback_through_the_files_store(client, headers, engine, settings, store_dir):
    prompt_id = synced(engine, settings)
    sid = make_suggestion(engine, prompt_id, savings=250.0)
    queue = client.get("/suggestions", params={"status": "pending", "min_savings": 100}, headers=headers["viewer"])
    assert [s["id"] for s in queue.json()] == [sid]
    detail = client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()
    assert detail["prompt_name"] == "triage" and detail["evidence"]["holdout_n"] == 60
    assert detail["baseline"]["labels"] == ["production"]

    approved = client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"])
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    again = client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"])
    assert again.status_code == 200  # idempotent for the same reviewer

    deployed = client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"])
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["label"] == "staging" and deployed.json()["external_version"] == "2"
    assert (store_dir / "prompts" / "triage" / "2.md").exists()
    labels = yaml.safe_load((store_dir / "prompts" / "triage" / "labels.yaml").read_text())
    assert labels == {"production": "1", "staging": "2"}
    assert client.post(f"/suggestions/{sid}/deploy", headers=headers["engineer"]).json()["id"] == deployed.json()["id"]
    assert labels_shown(client, headers, prompt_id) == {"1": ["production"], "2": ["staging"]}

    promoted = client.post(f"/suggestions/{sid}/promote", headers=headers["engineer"])
    assert promoted.status_code == 200, promoted.text
    assert yaml.safe_load((store_dir / "prompts" / "triage" / "labels.yaml").read_text())["production"] == "2"
    assert client.post(f"/suggestions/{sid}/promote", headers=headers["engineer"]).json()["id"] == promoted.json()["id"]
    assert labels_shown(client, headers, prompt_id) == {"1": [], "2": ["production", "staging"]}

    rolled = client.post(f"/suggestions/{sid}/rollback", headers=headers["engineer"])
    assert rolled.status_code == 200, rolled.text
    assert yaml.safe_load((store_dir / "prompts" / "triage" / "labels.yaml").read_text())["production"] == "1"
    assert labels_shown(client, headers, prompt_id) == {"1": ["production"], "2": ["staging"]}
    [report] = sync(engine=engine, settings=settings)  # the store and trimloop agree on every label
    assert report.labels_changed == 0 and report.versions_added == 0
    final = client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()
    assert final["status"] == "rolled_back"
    assert [d["action"] for d in final["deployments"]] == ["deploy", "promote", "rollback"]
    actions = [e["action"] for e in client.get("/audit", params={"object_type": "suggestion"},
                                                headers=headers["viewer"]).json()]
    assert actions == ["suggestion.rollback", "suggestion.promote", "suggestion.deploy", "suggestion.approve"]
