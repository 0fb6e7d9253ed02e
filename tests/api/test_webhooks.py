"""Webhooks against a local receiver: signed, retried with backoff, recorded; Slack format."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from trimloop.api import webhooks
from trimloop.api.app import create_app
from trimloop.core.settings import WebhookConfig

from tests.api.conftest import make_suggestion, synced

SECRET = "s3cret-for-tests"


class Receiver:
    """A local HTTP server that fails the first `fail_first` requests with 500, then says 204."""

    def __init__(self, fail_first: int = 0):
        self.fail_first, self.requests = fail_first, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                self.send_response(500 if len(outer.requests) <= outer.fail_first else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/secret-path"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver(fail_first=2)
    yield r
    r.close()


def hooked(settings, url, **extra):
    hook = WebhookConfig(url=url, secret_env="TEST_HOOK_SECRET", backoff_base_s=0.01, **extra)
    return settings.model_copy(update={"webhooks": [hook]})


def test_approval_is_delivered_signed_after_two_failures(settings, engine, headers, receiver, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    settings = hooked(settings, receiver.url)
    sid = make_suggestion(engine, synced(engine, settings))
    with TestClient(create_app(settings, engine)) as client:
        assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 200
        assert len(receiver.requests) == 3  # two 500s, then success: once more per retry
        bodies = {body for _, body in receiver.requests}
        assert len(bodies) == 1  # the same event each time
        head, body = receiver.requests[-1]
        assert head["X-Trimloop-Event"] == "suggestion.approved"
        assert webhooks.verify(SECRET, head["X-Trimloop-Timestamp"], body, head["X-Trimloop-Signature"])
        assert not webhooks.verify("wrong", head["X-Trimloop-Timestamp"], body, head["X-Trimloop-Signature"])
        event = json.loads(body)
        assert event["event"] == "suggestion.approved" and event["data"]["suggestion_id"] == sid
        assert event["link"].endswith(f"/ui/suggestions/{sid}")
        [record] = client.get("/audit", params={"action": "webhook.delivery"}, headers=headers["viewer"]).json()
        assert record["after"]["ok"] is True
        assert [a.get("status") for a in record["after"]["attempts"]] == [500, 500, 204]
        assert record["object_id"] == "127.0.0.1" and "secret-path" not in json.dumps(record)
        # repeating the approval is idempotent and fires nothing new
        assert client.post(f"/suggestions/{sid}/approve", headers=headers["reviewer"]).status_code == 200
        assert len(receiver.requests) == 3


async def test_slack_payload_and_a_receiver_that_never_recovers(settings, engine, monkeypatch):
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    always_down = Receiver(fail_first=100)
    try:
        settings = hooked(settings, always_down.url, format="slack", max_retries=2)
        [delivery] = await webhooks.notify(engine=engine, settings=settings, event="run.failed",
                                           data={"run_id": 7, "summary": "run 7 failed: budget"})
        assert not delivery.ok and len(delivery.attempts) == 3 == len(always_down.requests)
        slack = json.loads(always_down.requests[0][1])
        assert "run 7 failed" in slack["text"] and slack["blocks"][0]["type"] == "section"
    finally:
        always_down.close()


async def test_unsubscribed_events_are_not_sent(settings, engine):
    settings = hooked(settings, "http://127.0.0.1:9/never", events=["suggestion.deployed"])
    assert await webhooks.notify(engine=engine, settings=settings, event="suggestion.approved",
                                 data={"suggestion_id": 1}) == []


@pytest.mark.parametrize("value", [None, ""])
async def test_a_webhook_whose_secret_is_unset_is_not_sent_unsigned(settings, engine, receiver, monkeypatch, caplog,
                                                                    value):
    if value is None:
        monkeypatch.delenv("TEST_HOOK_SECRET", raising=False)
    else:
        monkeypatch.setenv("TEST_HOOK_SECRET", value)
    settings = hooked(settings, receiver.url)
    [delivery] = await webhooks.notify(engine=engine, settings=settings, event="run.failed",
                                       data={"run_id": 7, "summary": "run 7 failed"})
    assert not delivery.ok and receiver.requests == []  # a body signed with an empty key proves nothing
    assert delivery.attempts == [{"attempt": 0, "error": "secret_env_unset", "secret_env": "TEST_HOOK_SECRET"}]
    assert "TEST_HOOK_SECRET is unset or empty" in caplog.text
