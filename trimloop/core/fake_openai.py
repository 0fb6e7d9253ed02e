"""A fake OpenAI-compatible server with a fixed latency and scripted faults, for tests and benches.

    python -m trimloop.core.fake_openai --port 8500 --latency-ms 50

Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`, and control routes:
`POST /_faults` with `{"faults": ["429:2", "500", "timeout", "malformed", "slow:300", "ok"]}` (applied
to the next requests in order; `429:N` sends Retry-After N), `GET /_stats` (requests, completions
answered, peak in-flight), `POST /_reset`. Usage reports prompt tokens by OpenAI's chat accounting
when started with `--count-tokens`, and `completion_tokens = max_tokens` (as if the model used
its whole allowance), so a caller's worst-case estimate and the bill agree.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web


class FakeOpenAI:
    def __init__(self, *, latency_ms: float = 0.0, count_tokens: bool = False, timeout_s: float = 30.0):
        self.latency = latency_ms / 1000
        self.count_tokens = count_tokens
        self.timeout_s = timeout_s
        self.faults: deque[str] = deque()
        self.requests = 0
        self.answered = 0
        self.inflight = 0
        self.peak_inflight = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/_faults", self.set_faults)
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_reset", self.reset)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=False)

    async def _answer(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        self.requests += 1
        self.inflight += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        try:
            body = await request.json()
            fault = self.faults.popleft() if self.faults else "ok"
            name, _, arg = fault.partition(":")
            if name == "429":
                return web.json_response({"error": {"message": "rate limited"}}, status=429,
                                         headers={"Retry-After": arg or "1"})
            if name in ("500", "502", "503"):
                return web.json_response({"error": {"message": "upstream failed"}}, status=int(name))
            if name == "400":
                return web.json_response({"error": {"message": "bad request"}}, status=400)
            if name == "timeout":
                await asyncio.sleep(self.timeout_s)
            if name == "slow":
                await asyncio.sleep(float(arg or 1000) / 1000)
            elif self.latency:
                await asyncio.sleep(self.latency)
            if name == "malformed":
                return web.Response(text='{"choices": [ {"mess', content_type="application/json")
            max_tokens = int(body.get("max_tokens") or 16)
            if chat:
                last = body["messages"][-1]["content"]
                prompt_tokens = _chat_tokens(body["messages"]) if self.count_tokens else 10
                choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": f"echo: {last[:40]}"},
                                          "finish_reason": "length"}
            else:
                prompt_tokens = _tokens(body["prompt"]) if self.count_tokens else 10
                choice = {"index": 0, "text": f" echo: {body['prompt'][-40:]}", "finish_reason": "length"}
            self.answered += 1
            return web.json_response({
                "id": f"cmpl-{self.requests}",
                "object": "chat.completion" if chat else "text_completion",
                "model": body.get("model", "fake"),
                "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens,
                          "total_tokens": prompt_tokens + max_tokens},
            })
        finally:
            self.inflight -= 1

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def set_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.faults.extend(body.get("faults", []))
        return web.json_response({"queued": len(self.faults)})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "answered": self.answered,
                                  "peak_inflight": self.peak_inflight, "inflight": self.inflight})

    async def reset(self, request: web.Request) -> web.Response:
        self.faults.clear()
        self.requests = self.answered = self.peak_inflight = 0
        return web.json_response({"ok": True})


def _tokens(text: str) -> int:
    from trimloop.core.catalog import count_tokens

    return count_tokens(text)


def _chat_tokens(messages: list[dict[str, str]]) -> int:
    from trimloop.core.catalog import count_message_tokens

    return count_message_tokens(messages)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(*args: str, startup_s: float = 20.0) -> Iterator[str]:
    """This server in its own process on a free loopback port (extra CLI `args`), stopped on
    exit; yields its base URL (without /v1). For tests and benches."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "trimloop.core.fake_openai", "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                if httpx.get(f"{url}/v1/models", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"fake OpenAI server on port {port} did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--count-tokens", action="store_true")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    args = parser.parse_args()
    server = FakeOpenAI(latency_ms=args.latency_ms, count_tokens=args.count_tokens, timeout_s=args.timeout_s)
    web.run_app(server.app(), host="127.0.0.1", port=args.port, print=None, access_log=None,
                backlog=1024)


if __name__ == "__main__":
    main()
