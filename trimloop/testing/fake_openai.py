"""A fake OpenAI-compatible server with a fixed latency and scripted faults, for tests and benches.

    python -m trimloop.testing.fake_openai --port 8500 --latency-ms 50

Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/messages` (Anthropic's Messages
API, answered in its shape), `GET /v1/models`, and control routes:

- `POST /_faults` with `{"faults": ["429:2", "500", "timeout", "malformed", "slow:300", "ok"]}`:
  applied to the next requests in order (`429:N` sends Retry-After N; `302`, `307` … redirect elsewhere). With `"cycle": [...]` the
  list repeats forever once the queue is empty (`{"cycle": ["503"]}`: a provider that is down for
  good; `{"cycle": ["ok", "ok", "500"]}`: one request in three fails). `{"cycle": []}` ends it.
- `POST /_hold` with `{"on": true}`: requests that arrive from now wait (unanswered) until
  `{"on": false}`, which answers them, or `{"on": false, "drop": true}`, which fails them (503).
  A test can so crash a client while its calls are in flight at a moment it chooses.
- a request header `X-Fake-Clock: SECONDS` sets the prompt cache's clock for that request, so a
  test can replay logged traffic with its real gaps in no time.
- `GET /_stats` (requests, answered, peak in-flight, held …; with `?bodies=1` and the server started
  with `--track-bodies`, per distinct request body: received / answered / failed / abandoned, and
  the model and usage of each answer), `POST /_reset`.

"Answered" counts a 200 with a well-formed body written to a client that was still connected: the
calls a provider would bill. An answer whose client had gone (timed out, killed) is "abandoned".

Usage reports prompt tokens by OpenAI's chat accounting when started with `--count-tokens`, and
`completion_tokens = max_tokens` (as if the model used its whole allowance), so a caller's
worst-case estimate and the bill agree. Answers echo the prompt, unless `--replies FILE` gives
rules: `{"after": "Review: ", "rules": [["regex", "reply"], …], "default": "reply"}` — the text
after the last `after` in the prompt is searched with each regex in turn; the first match's reply
is the answer (so a test can make the fake model answer a classification correctly).

Billing as providers do (`testing.provider_cache`): `--prompt-cache openai` caches prompt prefixes
by OpenAI's rule (≥ 1,024 tokens, 128-token steps, automatic) and reports
`usage.prompt_tokens_details.cached_tokens`; `--prompt-cache anthropic` caches the system message
as if it carried a `cache_control` breakpoint (per-model minimum, `--cache-minimum` to change it)
and reports Anthropic's usage (`input_tokens` without the cache, `cache_read_input_tokens`,
`cache_creation_input_tokens`, `output_tokens`). `--reasoning-tokens N` adds reasoning tokens to
every answer's completion tokens (`completion_tokens_details.reasoning_tokens`), deterministic per
setting: N without a reasoning parameter or at `reasoning_effort` "medium", 2N at "high", N/4 at
"low", 0 at "minimal"; with Anthropic's `thinking`, min(N, budget_tokens) when enabled, 0 when
disabled. Both imply `--count-tokens`. With `--explicit-breakpoints` the Anthropic cache reads only
the caller's own `cache_control` blocks (as Anthropic does): each system block is one system
message, and a request without a breakpoint caches nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import cycle
from pathlib import Path
from typing import Any

from aiohttp import web

from trimloop.core.pricing import cache_rule
from trimloop.testing.provider_cache import PromptCache, chat_tokens


class FakeOpenAI:
    def __init__(self, *, latency_ms: float = 0.0, count_tokens: bool = False, timeout_s: float = 30.0,
                 track_bodies: bool = False, replies: dict[str, Any] | None = None,
                 prompt_cache: str | None = None, cache_minimum: int | None = None, cache_ttl_s: float = 300.0,
                 reasoning_tokens: int = 0, explicit_breakpoints: bool = False, first_token_ms: float = 0.0,
                 stream_rest_ms: float = 0.0):
        self.latency = latency_ms / 1000
        self.first_token = first_token_ms / 1000  # a streamed answer's first chunk comes after this
        self.stream_rest = stream_rest_ms / 1000  # and the rest of it after this much more
        self.count_tokens = count_tokens or prompt_cache is not None or reasoning_tokens > 0
        self.usage_style = prompt_cache or "openai"
        self.prompt_cache = prompt_cache
        self.cache_minimum = cache_minimum
        self.cache_ttl_s = cache_ttl_s
        self.reasoning_tokens = reasoning_tokens
        self.explicit_breakpoints = explicit_breakpoints
        self._caches: dict[str, PromptCache] = {}
        self.timeout_s = timeout_s
        self.track_bodies = track_bodies
        self.replies = _compile_replies(replies) if replies else None
        self.faults: deque[str] = deque()
        self._cycle: Iterator[str] | None = None
        self._hold: asyncio.Event | None = None  # set = open; cleared = holding
        self._drop_held = False
        self.bodies: dict[str, dict[str, Any]] = {}
        self._zero()

    def _zero(self) -> None:
        self.requests = self.answered = self.abandoned = self.failed = 0
        self.inflight = self.peak_inflight = self.held = self.dropped = 0
        self.bodies = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/_faults", self.set_faults)
        app.router.add_post("/_hold", self.set_hold)
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_reset", self.reset)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=True)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's Messages API (what litellm's `anthropic/…` models call at `{api_base}/v1/messages`)."""
        return await self._answer(request, chat=True, anthropic=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, chat=False)

    def _next_fault(self) -> str:
        if self.faults:
            return self.faults.popleft()
        return next(self._cycle) if self._cycle is not None else "ok"

    async def _answer(self, request: web.Request, *, chat: bool, anthropic: bool = False) -> web.StreamResponse:
        self.requests += 1
        self.inflight += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        track: dict[str, Any] | None = None
        try:
            raw = await request.read()
            body = json.loads(raw)
            clock = request.headers.get("X-Fake-Clock")  # a replay's own clock for the prompt cache (seconds)
            now = float(clock) if clock else None
            if self.track_bodies:
                digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
                track = self.bodies.setdefault(digest, {"received": 0, "answered": 0, "failed": 0,
                                                        "abandoned": 0, "answers": []})
                track["received"] += 1
            if self._hold is not None and not self._hold.is_set():
                self.held += 1
                try:
                    await self._hold.wait()
                finally:
                    self.held -= 1
                if self._drop_held:
                    self.dropped += 1
                    return self._failed(track, web.json_response({"error": {"message": "dropped"}}, status=503))
            fault = self._next_fault()
            name, _, arg = fault.partition(":")
            if name == "429":
                return self._failed(track, web.json_response({"error": {"message": "rate limited"}}, status=429,
                                                             headers={"Retry-After": arg or "1"}))
            if name in ("500", "502", "503"):
                return self._failed(track, web.json_response({"error": {"message": "upstream failed"}},
                                                             status=int(name)))
            if name in ("301", "302", "307", "308"):  # a provider (or a proxy) that sends callers elsewhere
                return self._failed(track, web.Response(status=int(name), headers={
                    "Location": "http://elsewhere.invalid/v1/chat/completions"}))
            if name == "400":
                return self._failed(track, web.json_response({"error": {"message": "bad request"}}, status=400))
            if name == "timeout":
                await asyncio.sleep(self.timeout_s)
            if name == "slow":
                await asyncio.sleep(float(arg or 1000) / 1000)
            elif self.latency:
                await asyncio.sleep(self.latency)
            if name == "malformed":
                return self._failed(track, web.Response(text='{"choices": [ {"mess', content_type="application/json"))
            max_tokens = int(body.get("max_tokens") or 16)
            cached = written = 0
            marked: int | None = None  # the index of the last message carrying a cache_control breakpoint
            if anthropic:  # the system prompt rides beside the messages; contents may be blocks
                if self.explicit_breakpoints:
                    body["messages"], marked = _with_breakpoints(body.get("system"), body["messages"])
                else:
                    body["messages"] = ([{"role": "system", "content": _text_of(body["system"])}] if body.get("system")
                                        else []) + [{"role": m.get("role"), "content": _text_of(m.get("content"))}
                                                    for m in body["messages"]]
            reasoning = self._reasoning(body)
            if chat:
                last = body["messages"][-1]["content"]
                prompt_tokens = _chat_tokens(body["messages"]) if self.count_tokens else 10
                if self.prompt_cache:
                    cached, written = self._bill_cache(str(body.get("model", "fake")), body["messages"],
                                                       marked if self.explicit_breakpoints and anthropic else -1,
                                                       now=now if now is not None else time.monotonic())
                whole = "\n".join(str(m.get("content", "")) for m in body["messages"])
                content = self._reply(whole) if self.replies else f"echo: {last[:40]}"
                choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content},
                                          "finish_reason": "length"}
            else:
                prompt_tokens = _tokens(body["prompt"]) if self.count_tokens else 10
                text = self._reply(body["prompt"]) if self.replies else f" echo: {body['prompt'][-40:]}"
                choice = {"index": 0, "text": text, "finish_reason": "length"}
            completion_tokens = max_tokens + reasoning
            usage = self._usage(prompt_tokens, completion_tokens, cached, written, reasoning)
            if anthropic:
                usage = {"input_tokens": prompt_tokens - cached - written, "cache_creation_input_tokens": written,
                         "cache_read_input_tokens": cached, "output_tokens": completion_tokens}
                response = web.json_response({
                    "id": f"msg_{self.requests}", "type": "message", "role": "assistant",
                    "model": body.get("model", "fake"), "content": [{"type": "text", "text": content}],
                    "stop_reason": "max_tokens", "stop_sequence": None, "usage": usage})
            elif body.get("stream"):
                return await self._stream(request, track, body, chat=chat, choice=choice, usage=usage,
                                          prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            else:
                response = web.json_response({
                    "id": f"cmpl-{self.requests}",
                    "object": "chat.completion" if chat else "text_completion",
                    "model": body.get("model", "fake"),
                    "choices": [choice],
                    "usage": usage,
                })
            if request.transport is None or request.transport.is_closing():
                self.abandoned += 1  # the client went away (timed out, was killed): nobody gets this
                if track is not None:
                    track["abandoned"] += 1
                return response
            self.answered += 1
            if track is not None:
                track["answered"] += 1
                track["answers"].append({"model": body.get("model"), "prompt_tokens": prompt_tokens,
                                         "completion_tokens": completion_tokens, "cached_tokens": cached,
                                         "cache_write_tokens": written, "reasoning_tokens": reasoning})
            return response
        finally:
            self.inflight -= 1

    async def _stream(self, request: web.Request, track: dict[str, Any] | None, body: dict[str, Any], *, chat: bool,
                      choice: dict[str, Any], usage: dict[str, Any], prompt_tokens: int,
                      completion_tokens: int) -> web.StreamResponse:
        """The answer as server-sent events, OpenAI's way: a first chunk after `first_token_ms`,
        the rest after `stream_rest_ms`, the usage on a last chunk (stream_options.include_usage)."""
        text = choice["message"]["content"] if chat else choice["text"]
        half = max(1, len(text) // 2)
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(piece: str | None, finish: str | None = None, with_usage: bool = False) -> bytes:
            choices = [] if piece is None else [
                {"index": 0, "delta": {"content": piece}, "finish_reason": finish} if chat
                else {"index": 0, "text": piece, "finish_reason": finish}]
            data = {"id": f"cmpl-{self.requests}", "object": kind, "model": body.get("model", "fake"), "choices": choices}
            if with_usage and (body.get("stream_options") or {}).get("include_usage"):
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n".encode()

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(self.first_token)
        await response.write(event(text[:half]))
        await asyncio.sleep(self.stream_rest)
        await response.write(event(text[half:], finish=choice["finish_reason"]))
        await response.write(event(None, with_usage=True))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.answered += 1
        if track is not None:
            track["answered"] += 1
            track["answers"].append({"model": body.get("model"), "prompt_tokens": prompt_tokens,
                                     "completion_tokens": completion_tokens, "stream": True})
        return response

    def _reasoning(self, body: dict[str, Any]) -> int:
        """Reasoning tokens of this answer, deterministic per setting (see the module's docstring)."""
        n = self.reasoning_tokens
        if not n:
            return 0
        thinking = body.get("thinking")
        if isinstance(thinking, dict):
            return min(n, int(thinking.get("budget_tokens") or 0)) if thinking.get("type") == "enabled" else 0
        effort = body.get("reasoning_effort")
        return {"minimal": 0, "low": n // 4, "medium": n, "high": 2 * n}.get(str(effort), n) if effort else n

    def _bill_cache(self, model: str, messages: list[dict[str, Any]], marked: int | None = -1, *,
                    now: float) -> tuple[int, int]:
        """(cached, written) prompt tokens of this request, by the provider's caching rule. `marked`:
        the message whose end is the caller's breakpoint (None: none); -1: the last system message."""
        cache = self._caches.get(model)
        if cache is None:
            rule = cache_rule(model)  # the served model's own rule (claude-haiku-4-5: 4,096 tokens) …
            if rule is None or rule.provider != self.prompt_cache:  # … else the provider's usual one
                rule = cache_rule("claude" if self.prompt_cache == "anthropic" else "gpt-4o")
            assert rule is not None
            if self.cache_minimum is not None:
                rule = replace(rule, minimum=self.cache_minimum)
            cache = self._caches[model] = PromptCache(rule, self.cache_ttl_s)
        tokens, ends = chat_tokens(messages)
        if marked != -1:
            return cache.bill(model, tokens, now, ends[marked] + 1 if marked is not None else None)
        systems = [end for end, m in zip(ends, messages, strict=True) if m.get("role") == "system"]
        breakpoint = systems[-1] + 1 if systems else None  # as if the last system message had cache_control
        return cache.bill(model, tokens, now, breakpoint)

    def _usage(self, prompt: int, completion: int, cached: int, written: int, reasoning: int = 0) -> dict[str, Any]:
        """The usage object in the provider's own shape."""
        if self.usage_style == "anthropic":  # input_tokens leaves out both cache buckets
            return {"input_tokens": prompt - cached - written, "cache_read_input_tokens": cached,
                    "cache_creation_input_tokens": written, "output_tokens": completion}
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion}
        if self.prompt_cache:
            usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                                  "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        return usage

    def _failed(self, track: dict[str, Any] | None, response: web.Response) -> web.Response:
        self.failed += 1
        if track is not None:
            track["failed"] += 1
        return response

    def _reply(self, prompt: str) -> str:
        assert self.replies is not None
        after, rules, default = self.replies
        subject = prompt.rsplit(after, 1)[-1] if after else prompt
        for pattern, reply in rules:
            if pattern.search(subject):
                return reply
        return default

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def set_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.faults.extend(body.get("faults", []))
        if "cycle" in body:
            self._cycle = cycle(list(body["cycle"])) if body["cycle"] else None
        return web.json_response({"queued": len(self.faults)})

    async def set_hold(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self._hold is None:
            self._hold = asyncio.Event()
            self._hold.set()
        if body.get("on"):
            self._drop_held = False
            self._hold.clear()
        else:
            self._drop_held = bool(body.get("drop"))
            self._hold.set()
            await asyncio.sleep(0)  # let the held requests see the flag before a later hold clears it
        return web.json_response({"held": self.held})

    async def stats(self, request: web.Request) -> web.Response:
        out: dict[str, Any] = {"requests": self.requests, "answered": self.answered, "failed": self.failed,
                               "abandoned": self.abandoned, "held": self.held, "dropped": self.dropped,
                               "peak_inflight": self.peak_inflight, "inflight": self.inflight}
        if request.query.get("bodies"):
            out["bodies"] = self.bodies
        return web.json_response(out)

    async def reset(self, request: web.Request) -> web.Response:
        self.faults.clear()
        self._cycle = None
        self._zero()
        return web.json_response({"ok": True})


def _text_of(content: Any) -> str:
    """Text of an Anthropic content: a string, or blocks of which the text ones count."""
    if isinstance(content, list):
        return "".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return str(content or "")


def _with_breakpoints(system: Any, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int | None]:
    """Anthropic's system blocks and messages as chat messages (one system message per block), and the
    index of the last one that carries `cache_control` (None: the caller set no breakpoint)."""
    out: list[dict[str, Any]] = []
    marked = None
    blocks = system if isinstance(system, list) else ([{"type": "text", "text": system}] if system else [])
    for block in blocks:
        out.append({"role": "system", "content": str(block.get("text", ""))})
        if block.get("cache_control"):
            marked = len(out) - 1
    for message in messages:
        content = message.get("content")
        out.append({"role": message.get("role"), "content": _text_of(content)})
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("cache_control") for b in content):
            marked = len(out) - 1
    return out, marked


def _compile_replies(spec: dict[str, Any]) -> tuple[str, list[tuple[re.Pattern[str], str]], str]:
    rules = [(re.compile(pattern), str(reply)) for pattern, reply in spec.get("rules", [])]
    return str(spec.get("after") or ""), rules, str(spec.get("default", ""))


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
    proc = subprocess.Popen([sys.executable, "-m", "trimloop.testing.fake_openai", "--port", str(port), *args],
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
    parser.add_argument("--track-bodies", action="store_true", help="count requests per distinct body")
    parser.add_argument("--replies", type=Path, help="JSON reply rules (see the module's docstring)")
    parser.add_argument("--prompt-cache", choices=("openai", "anthropic"),
                        help="cache prompt prefixes by this provider's rule and report its usage shape")
    parser.add_argument("--cache-minimum", type=int, help="fewest tokens cached (default: the provider's)")
    parser.add_argument("--cache-ttl-s", type=float, default=300.0)
    parser.add_argument("--reasoning-tokens", type=int, default=0,
                        help="reasoning tokens at the default or medium effort (see the module's docstring)")
    parser.add_argument("--explicit-breakpoints", action="store_true",
                        help="the Anthropic cache reads only the caller's cache_control blocks")
    parser.add_argument("--first-token-ms", type=float, default=0.0, help="a streamed answer's first chunk delay")
    parser.add_argument("--stream-rest-ms", type=float, default=0.0, help="then the rest of it after this")
    args = parser.parse_args()
    replies = json.loads(args.replies.read_text()) if args.replies else None
    server = FakeOpenAI(latency_ms=args.latency_ms, count_tokens=args.count_tokens, timeout_s=args.timeout_s,
                        track_bodies=args.track_bodies, replies=replies, prompt_cache=args.prompt_cache,
                        cache_minimum=args.cache_minimum, cache_ttl_s=args.cache_ttl_s,
                        reasoning_tokens=args.reasoning_tokens, explicit_breakpoints=args.explicit_breakpoints,
                        first_token_ms=args.first_token_ms, stream_rest_ms=args.stream_rest_ms)
    if server.count_tokens:
        _chat_tokens([{"role": "user", "content": "warm up"}])  # load the tokenizer before the first request
    web.run_app(server.app(), host="127.0.0.1", port=args.port, print=None, access_log=None,
                backlog=1024)


if __name__ == "__main__":
    main()
