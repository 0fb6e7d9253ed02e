"""`POST /v1/traces` on a real `trimloop serve`: the SDK's OTLP/HTTP exporters (protobuf and JSON,
gzip) with the real OpenAI instrumentations calling the fake OpenAI server; tokens, cost and latency
land in the logs; a batch sent again adds nothing; 401 / 403 / 413 / 429, and nothing acknowledged
is lost. Unit tests over the app in-process cover the wire details."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.api.test_serve import _healthy, _stop
from tests.connectors.helpers import make_store, stored_json
from tests.connectors.servers import running
from tests.optimizer.provider_workspace import poll_until
from trimloop.api.app import create_app
from trimloop.connectors.files import FilesConnector
from trimloop.connectors.sync import sync_connector
from trimloop.core import store
from trimloop.core.db import make_engine, session_scope, upgrade
from trimloop.core.settings import Settings
from trimloop.testing.fake_openai import free_port

HERE = Path(__file__).parent
MAX_BODY = 200_000


@pytest.fixture
def fake_openai(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with running([sys.executable, "-m", "trimloop.testing.fake_openai", "--port", str(port)],
                 health=f"http://127.0.0.1:{port}/v1/models", env={}, log=tmp_path / "fake.log", timeout_s=30):
        yield f"http://127.0.0.1:{port}/v1"


class Server:
    """A `trimloop serve --no-scheduler` over `db_url` with the triage prompt synced and a token per role."""

    def __init__(self, tmp_path: Path, db_url: str, queue: int):
        upgrade(db_url)
        self.engine = make_engine(db_url)
        prompts = make_store(tmp_path / "store")
        report = sync_connector(engine=self.engine, connector=FilesConnector(name="local", options={"path": str(prompts)}))
        assert report.fatal is None and report.versions_added == 1
        with session_scope(self.engine) as session:
            self.tokens = {role: store.create_token(session=session, name=role, role=role, actor="test")[1]
                           for role in ("ingest", "viewer", "admin")}
        config = tmp_path / "trimloop.toml"
        config.write_text(f'[connectors.local]\ntype = "files"\npath = "{prompts}"\n')
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIMLOOP_")}
        env.update(TRIMLOOP_HOME=str(tmp_path / "home"), TRIMLOOP_DATABASE_URL=db_url, TRIMLOOP_CONFIG=str(config),
                   TRIMLOOP_API__PORT=str(port), TRIMLOOP_API__INGEST_QUEUE=str(queue),
                   TRIMLOOP_API__MAX_BODY_BYTES=str(MAX_BODY))
        self.url, self.log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", "from trimloop.api.cli import main; main()", "serve",
                                          "--no-scheduler"], env=env, stdout=out, stderr=subprocess.STDOUT)
        poll_until("/health", lambda: _healthy(self.url) or self.proc.poll() is not None, 60)
        assert self.proc.poll() is None, self.log.read_text()

    def close(self) -> None:
        _stop(self.proc)
        self.engine.dispose()
        assert "Traceback" not in self.log.read_text(), self.log.read_text()

    def bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def logs(self) -> list[tuple]:
        with self.engine.connect() as conn:
            return conn.execute(text(
                "select l.external_id, l.inputs, l.model, l.input_tokens, l.output_tokens, l.cost, l.latency_s, "
                "v.external_version from logrecord l left join promptversion v on v.id = l.version_id "
                "where l.connector = 'otlp' order by l.external_id")).all()


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    running_server = Server(tmp_path, db_url, queue=1)
    try:
        yield running_server
    finally:
        running_server.close()


def send(server: Server, base_url: str, protocol: str, instrumentation: str, times: int) -> dict:
    """Run the exporting app in its own process, configured the way the docs say."""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{server.url}/v1/traces",
           "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "Authorization=" + urllib.parse.quote(f"Bearer {server.tokens['ingest']}"),
           "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
           "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "60"}  # seconds; the default 10 is short on a loaded 2-core machine
    done = subprocess.run([sys.executable, str(HERE / "otlp_send.py"), base_url, protocol, instrumentation, str(times)],
                          check=True, timeout=120, capture_output=True, env=env, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_real_exporters_send_real_instrumented_calls_to_serve(fake_openai: str, server: Server) -> None:
    import openinference.instrumentation.openai  # noqa: F401  (the dev extra; fails, never skips, if absent)
    import opentelemetry.exporter.otlp.json.http  # noqa: F401
    import opentelemetry.exporter.otlp.proto.http  # noqa: F401

    sent = send(server, fake_openai, "protobuf", "genai", times=2)  # GenAI semconv, each call in an app span
    assert sent == {"spans": 6, "results": ["SUCCESS", "SUCCESS"]}
    genai = server.logs()
    assert len(genai) == 3  # the LLM spans; the second export added nothing
    sent = send(server, fake_openai, "json", "openinference", times=2)  # OpenInference, matched by its messages
    assert sent == {"spans": 3, "results": ["SUCCESS", "SUCCESS"]}
    rows = server.logs()
    assert len(rows) == 6
    tickets = sorted(stored_json(r[1])["ticket"] for r in rows)
    assert tickets == sorted(["I was charged twice", "The app crashes on start", "Where is my invoice?"] * 2)
    for external_id, _, model, input_tokens, output_tokens, cost, latency_s, version in rows:
        trace_id, span_id = external_id.split(":")
        assert len(trace_id) == 32 and len(span_id) == 16
        assert model == "gpt-4o-mini" and version == "1"
        assert input_tokens > 0 and output_tokens > 0 and latency_s > 0
        assert cost is not None and cost > 0  # tokens × the catalog's gpt-4o-mini prices
    # the docs' setup as an app runs it: a BatchSpanProcessor (one span a request, so each call's span
    # leaves before the app span naming the prompt), no message content, the TrimloopAttributes processor
    sent = send(server, fake_openai, "protobuf", "genai-batched", times=1)
    assert sent == {"spans": 6, "results": ["1:SUCCESS"] * 6}
    rows = server.logs()
    assert len(rows) == 9 and all(r[-1] == "1" for r in rows)
    assert sorted(stored_json(r[1])["ticket"] for r in rows) == sorted(
        ["I was charged twice", "The app crashes on start", "Where is my invoice?"] * 3)

    # what the receiver refuses, with the one error shape
    spans = b'{"resourceSpans": []}'
    anonymous = httpx.post(f"{server.url}/v1/traces", content=spans, headers={"Content-Type": "application/json"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    for role in ("viewer", "admin"):  # ingest is its own permission: not even an admin's token sends spans
        refused = httpx.post(f"{server.url}/v1/traces", content=spans,
                             headers={"Content-Type": "application/json", **server.bearer(role)})
        assert refused.status_code == 403 and "ingest" in refused.json()["error"]["hint"], refused.text
    assert httpx.get(f"{server.url}/prompts", headers=server.bearer("ingest")).status_code == 403
    big = httpx.post(f"{server.url}/v1/traces", content=b"{" + b" " * MAX_BODY + b"}",
                     headers={"Content-Type": "application/json", **server.bearer("ingest")})
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
    bomb = httpx.post(f"{server.url}/v1/traces", content=gzip.compress(b"{" + b" " * MAX_BODY * 5 + b"}"),
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip", **server.bearer("ingest")})
    assert bomb.status_code == 413, bomb.text  # small on the wire, over the cap once inflated
    assert len(server.logs()) == 9


def _export(ids: range) -> bytes:
    """One OTLP/JSON batch of GenAI spans, one per id, naming the triage prompt."""
    def span(i: int) -> dict:
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "trimloop.prompt": "triage",
                 "trimloop.prompt.version": "1", "trimloop.inputs": json.dumps({"ticket": f"t{i}"}),
                 "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 2}
        return {"traceId": f"{i:032x}", "spanId": f"{i:016x}", "name": "chat gpt-4o-mini",
                "startTimeUnixNano": str(1_750_000_000_000_000_000 + i), "endTimeUnixNano": str(1_750_000_000_400_000_000 + i),
                "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                               for k, v in attrs.items()]}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span(i) for i in ids]}]}]}).encode()


@pytest.mark.integration
def test_a_full_queue_is_429_and_nothing_acknowledged_is_lost(server: Server, db_url: str) -> None:
    headers = {"Content-Type": "application/json", **server.bearer("ingest")}
    assert httpx.post(f"{server.url}/v1/traces", content=_export(range(0)), headers=headers).json() == {}
    batches = [_export(range(1 + 10 * b, 11 + 10 * b)) for b in range(4)]
    answers: dict[int, httpx.Response] = {}
    locker = make_engine(db_url)
    conn = locker.connect()
    try:  # hold the write lock: the batch that gets the queue's one place waits on it, the others are refused
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("LOCK TABLE logrecord IN EXCLUSIVE MODE")

        def post(b: int) -> None:
            answers[b] = httpx.post(f"{server.url}/v1/traces", content=batches[b], headers=headers, timeout=60)

        threads = [threading.Thread(target=post, args=(b,)) for b in range(4)]
        for thread in threads:
            thread.start()
        poll_until("three refusals", lambda: len(answers) == 3, 30)
        refused = sorted(answers)
        assert all(answers[b].status_code == 429 for b in refused), [answers[b].text for b in refused]
        assert all(int(answers[b].headers["Retry-After"]) >= 1 for b in refused)
        assert answers[refused[0]].json()["error"]["code"] == "ingest_queue_full"
    finally:
        conn.rollback()
        conn.close()
        locker.dispose()
    for thread in threads:
        thread.join(60)
    [accepted] = set(range(4)) - set(refused)
    assert answers[accepted].status_code == 200 and answers[accepted].json() == {}
    assert len(server.logs()) == 10  # what was acknowledged is stored
    for b in refused:  # an exporter retries after Retry-After; now there is room
        assert httpx.post(f"{server.url}/v1/traces", content=batches[b], headers=headers).status_code == 200
    assert len({r[0] for r in server.logs()}) == len(server.logs()) == 40
    again = httpx.post(f"{server.url}/v1/traces", content=batches[accepted], headers=headers)
    assert again.status_code == 200 and len(server.logs()) == 40


# ---- the wire details, in-process ----

@pytest.fixture
def app_client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


def _prompt_synced(engine: Engine, settings: Settings) -> None:
    from tests.api.conftest import synced

    synced(engine, settings)


def test_protobuf_gzip_and_partial_success(app_client: TestClient, headers: dict, engine: Engine,
                                           settings: Settings) -> None:
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                          ExportTraceServiceResponse)

    _prompt_synced(engine, settings)
    data = json.loads(_export(range(1, 4)))
    for span in data["resourceSpans"][0]["scopeSpans"][0]["spans"]:  # protobuf's JSON mapping: ids in base64
        for key in ("traceId", "spanId"):
            span[key] = __import__("base64").b64encode(bytes.fromhex(span[key])).decode()
    unknown = dict(data["resourceSpans"][0]["scopeSpans"][0]["spans"][0], spanId="AAAAAAAAAP8=")
    unknown["attributes"] = [a if a["key"] != "trimloop.prompt" else {"key": a["key"], "value": {"stringValue": "nope"}}
                             for a in unknown["attributes"]]
    data["resourceSpans"][0]["scopeSpans"][0]["spans"].append(unknown)
    body = ParseDict(data, ExportTraceServiceRequest()).SerializeToString()
    reply = app_client.post("/v1/traces", content=gzip.compress(body), headers={
        "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip", **headers["ingest"]})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(reply.content)
    assert answer.partial_success.rejected_spans == 1 and "unknown prompt 'nope'" in answer.partial_success.error_message
    with engine.connect() as conn:
        ids = conn.execute(text("select external_id from logrecord where connector = 'otlp' order by 1")).scalars().all()
    assert ids == [f"{i:032x}:{i:016x}" for i in range(1, 4)]  # the same ids OTLP/JSON gives


def test_a_call_span_exported_before_its_parent_is_rejected_with_the_cause(app_client: TestClient, headers: dict,
                                                                          engine: Engine, settings: Settings) -> None:
    """A BatchSpanProcessor can export an LLM span before the span around it that names the prompt:
    the span is rejected (not stored, not counted) with the reason and the fix, not a generic one."""
    _prompt_synced(engine, settings)
    data = json.loads(_export(range(1, 3)))
    spans = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for span in spans:
        span["attributes"] = [a for a in span["attributes"] if not a["key"].startswith("trimloop.")]
    spans[0]["parentSpanId"] = f"{99:016x}"  # its parent went in another export
    counted = "select coalesce(sum(records), 0) from trafficaggregate"
    with engine.connect() as conn:
        before = conn.execute(text(counted)).scalar()
    reply = app_client.post("/v1/traces", content=json.dumps(data), headers={"Content-Type": "application/json",
                                                                            **headers["ingest"]})
    assert reply.status_code == 200, reply.text
    answer = reply.json()["partialSuccess"]
    assert answer["rejectedSpans"] == "2"
    assert f"its parent span {99:016x} was not in this export" in answer["errorMessage"]
    assert "TrimloopAttributes" in answer["errorMessage"]  # the fix, in the hint
    assert "records no messages to match against the prompts" in answer["errorMessage"]  # the root span's
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from logrecord where connector = 'otlp'")).scalar() == 0
        assert conn.execute(text(counted)).scalar() == before


@pytest.mark.parametrize("content_type,encoding,body,status,code", [
    ("text/plain", None, b"{}", 415, "unsupported_media_type"),
    ("application/json", "br", b"{}", 415, "unsupported_media_type"),
    ("application/json", None, b"[1]", 400, "invalid_otlp"),
    ("application/json", None, b"{nope", 400, "invalid_otlp"),
    ("application/x-protobuf", None, b"\xff\xff\xff", 400, "invalid_otlp"),
    ("application/json", "gzip", b"not gzip", 400, "invalid_gzip"),
    ("application/json", "gzip", gzip.compress(b"{}")[:-6], 400, "invalid_gzip"),
])
def test_bad_bodies_are_clear_4xx(app_client: TestClient, headers: dict, content_type: str, encoding: str | None,
                                  body: bytes, status: int, code: str) -> None:
    sent = {"Content-Type": content_type, **headers["ingest"], **({"Content-Encoding": encoding} if encoding else {})}
    reply = app_client.post("/v1/traces", content=body, headers=sent)
    assert reply.status_code == status and reply.json()["error"]["code"] == code, reply.text
    assert reply.json()["error"]["hint"]


def test_an_ingest_token_cannot_sign_in_to_the_ui(app_client: TestClient, headers: dict) -> None:
    page = app_client.get("/ui/login")
    import re

    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    token = headers["ingest"]["Authorization"].split(" ", 1)[1]
    reply = app_client.post("/ui/login", data={"token": token, "csrf": csrf.group(1)}, follow_redirects=False)
    assert reply.status_code == 403 and "only sends spans" in reply.text
