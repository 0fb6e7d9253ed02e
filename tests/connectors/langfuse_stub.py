"""A local Langfuse stub for contract tests: a real HTTP server on loopback that validates every
request and every response it sends against Langfuse's OpenAPI spec (openapi-core), and keeps a
small in-memory prompt store, a list of generation observations and a list of scores."""

from __future__ import annotations

import base64
import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

SPEC = Path(__file__).parent / "data" / "langfuse-openapi.yml"
AUTH = "Basic " + base64.b64encode(b"pk-lf-test:sk-lf-test").decode()


class LangfuseStub:
    def __init__(self) -> None:
        self.openapi = OpenAPI.from_file_path(str(SPEC))
        self.prompts: dict[str, list[dict[str, Any]]] = {}
        self.observations: list[dict[str, Any]] = []
        self.scores: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.calls: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LangfuseStub":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the store -------------------------------------------------------------------------
    def add_prompt(self, name: str, kind: str, prompt: Any, config: dict[str, Any], labels: list[str]) -> dict[str, Any]:
        versions = self.prompts.setdefault(name, [])
        for other in versions:
            other["labels"] = [x for x in other["labels"] if x not in labels and x != "latest"]
        version = {"type": kind, "name": name, "version": len(versions) + 1, "config": config,
                   "labels": sorted({*labels, "latest"}), "tags": [], "commitMessage": None, "prompt": prompt}
        versions.append(version)
        return version

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.split("/")]
        if path == "/api/public/v2/prompts" and method == "GET":
            page, limit = int(query.get("page", 1)), int(query.get("limit", 50))
            names = sorted(self.prompts)
            data = [{"name": n, "type": self.prompts[n][-1]["type"], "versions": [v["version"] for v in self.prompts[n]],
                     "labels": sorted({x for v in self.prompts[n] for x in v["labels"]}), "tags": [],
                     "lastUpdatedAt": "2025-06-01T12:00:00.000Z", "lastConfig": self.prompts[n][-1]["config"]}
                    for n in names[(page - 1) * limit : page * limit]]
            total_pages = max(1, -(-len(names) // limit))
            return 200, {"data": data, "meta": {"page": page, "limit": limit, "totalItems": len(names), "totalPages": total_pages}}
        if path == "/api/public/v2/prompts" and method == "POST":
            return 200, self.add_prompt(body["name"], body["type"], body["prompt"], body.get("config") or {},
                                        body.get("labels") or [])
        if len(parts) == 6 and parts[4] == "prompts" and method == "GET":
            versions = self.prompts.get(parts[5], [])
            wanted = [v for v in versions if str(v["version"]) == query.get("version", str(len(versions)))]
            return (200, wanted[0]) if wanted else (404, {"message": "Prompt not found"})
        if len(parts) == 8 and parts[6] == "versions" and method == "PATCH":
            versions = self.prompts.get(parts[5], [])
            target = [v for v in versions if str(v["version"]) == parts[7]]
            if not target:
                return 404, {"message": "Prompt version not found"}
            for other in versions:
                other["labels"] = [x for x in other["labels"] if x not in body["newLabels"]]
            keep = ["latest"] if "latest" in target[0]["labels"] else []
            target[0]["labels"] = sorted({*body["newLabels"], *keep})
            return 200, target[0]
        if path == "/api/public/v2/observations" and method == "GET":
            rows = [o for o in self.observations if o["type"] == query.get("type", o["type"])
                    and o["startTime"] >= query.get("fromStartTime", "")]
            start, limit = int(base64.b64decode(query["cursor"]).decode()) if "cursor" in query else 0, int(query.get("limit", 50))
            more = start + limit < len(rows)
            meta = {"cursor": base64.b64encode(str(start + limit).encode()).decode()} if more else {}
            return 200, {"data": rows[start : start + limit], "meta": meta}
        if path == "/api/public/v2/scores" and method == "GET":
            wanted_obs = set(query["observationId"].split(",")) if "observationId" in query else None
            rows = sorted((s for s in self.scores
                           if "fromTimestamp" not in query or _time(s.get("timestamp")) >= _time(query["fromTimestamp"])
                           and query.get("traceId", s.get("traceId")) == s.get("traceId")
                           and (wanted_obs is None or s.get("observationId") in wanted_obs)),
                          key=lambda s: str(s.get("timestamp")), reverse=True)  # newest first, as Langfuse
            if query.get("fields") == "score":
                rows = [{k: v for k, v in s.items() if k != "trace"} for s in rows]
            page, limit = int(query.get("page", 1)), int(query.get("limit", 50))
            total_pages = max(1, -(-len(rows) // limit))
            return 200, {"data": rows[(page - 1) * limit : page * limit],
                         "meta": {"page": page, "limit": limit, "totalItems": len(rows), "totalPages": total_pages}}
        return 404, {"message": "not found"}

    # -- HTTP ------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                stub.calls.append(f"{self.command} {url.path}")
                if self.headers.get("Authorization") != AUTH:
                    return self._send(401, {"message": "Invalid credentials"})
                request = MockRequest(stub.url, self.command.lower(), url.path, args=query, data=raw or None,
                                      headers=dict(self.headers), content_type=self.headers.get("Content-Type"))
                try:
                    stub.openapi.validate_request(request)
                except Exception as exc:  # a request the spec does not allow
                    stub.violations.append(f"request {self.command} {url.path}: {exc!r}")
                    return self._send(400, {"message": str(exc)})
                status, body = stub.route(self.command, url.path, query, json.loads(raw) if raw else None)
                payload = json.dumps(body).encode()
                try:
                    stub.openapi.validate_response(request, MockResponse(payload, status_code=status,
                                                                         content_type="application/json"))
                except Exception as exc:  # a response the spec does not describe
                    stub.violations.append(f"response {self.command} {url.path} {status}: {exc!r}")
                self._send(status, body)

            def _send(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
