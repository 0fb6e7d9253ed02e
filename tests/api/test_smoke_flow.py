"""The review workflow over HTTP: queue, evidence, approve, deploy to staging, promote, roll back."""

import yaml

from tests.api.conftest import make_suggestion, synced


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

    promoted = client.post(f"/suggestions/{sid}/promote", headers=headers["engineer"])
    assert promoted.status_code == 200, promoted.text
    assert yaml.safe_load((store_dir / "prompts" / "triage" / "labels.yaml").read_text())["production"] == "2"
    assert client.post(f"/suggestions/{sid}/promote", headers=headers["engineer"]).json()["id"] == promoted.json()["id"]

    rolled = client.post(f"/suggestions/{sid}/rollback", headers=headers["engineer"])
    assert rolled.status_code == 200, rolled.text
    assert yaml.safe_load((store_dir / "prompts" / "triage" / "labels.yaml").read_text())["production"] == "1"
    final = client.get(f"/suggestions/{sid}", headers=headers["viewer"]).json()
    assert final["status"] == "rolled_back"
    assert [d["action"] for d in final["deployments"]] == ["deploy", "promote", "rollback"]
    actions = [e["action"] for e in client.get("/audit", params={"object_type": "suggestion"},
                                                headers=headers["viewer"]).json()]
    assert actions == ["suggestion.rollback", "suggestion.promote", "suggestion.deploy", "suggestion.approve"]
