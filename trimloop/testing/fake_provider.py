"""A fake provider behind the real `Gateway`: answers from a script and makes no request.

Like httpx's `MockTransport` it replaces only the wire, so the spend cap, the response cache,
in-flight merging, retries and pricing under test are the gateway's own:

    provider = FakeProvider(responder=lambda model, prompt: " positive")
    gateway = Gateway(settings, engine=engine, provider=provider)

Answers come from `responder(model_id, prompt)` or, without one, from the queued outputs in
order. `fail(...)` scripts what the next attempts raise before anything is answered: a
`Retryable` (429 with its Retry-After, 5xx, timeout, malformed body) or a `Fatal` (other 4xx), as
the real providers do. Usage is reported the way a provider bills it — prompt tokens by OpenAI's
chat accounting, the answer cut to `max_tokens` — or left out (`usage=False`) so the gateway
counts for itself. Every answered call is in `.calls` (model id, prompt, params, seed, output
and usage); every attempt counts in `.attempts`.

A hosted model's habits can be scripted too: `latency=` gives each call's time to answer (a number,
or `latency(model_id, prompt, n)` for the n-th call, e.g. a seeded distribution), and
`noisy(responder, rate=0.05)` makes answers to the same request differ on 5 % of calls
(deterministic for a seed: the n-th call with a given prompt is changed or not, whatever the order).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from trimloop.core.catalog import ResolvedModel, count_message_tokens, count_tokens, tiktoken_encoding
from trimloop.core.identity import sha256_of
from trimloop.core.providers import Fatal, RawReply, Retryable
from trimloop.core.settings import ModelConfig

Prompt = list[dict[str, str]] | str
Responder = Callable[[str, Prompt], str]
Latency = Callable[[str, Prompt, int], float]


def uniform(key: Any, seed: int = 0) -> float:
    """A number in [0, 1) fixed by `key` and `seed`: a seeded draw that does not depend on call order."""
    return int(sha256_of({"key": key, "seed": seed})[:13], 16) / 16**13


def noisy(responder: Responder, *, rate: float, seed: int = 0,
          change: Callable[[str], str] = lambda out: out + " (said differently)") -> Responder:
    """`responder`, except that the n-th call with a given prompt is answered `change(answer)` with
    probability `rate` (a seeded draw per prompt and n): a provider that is not deterministic at
    temperature 0."""
    seen: Counter[str] = Counter()

    def answer(model: str, prompt: Prompt) -> str:
        key = json.dumps([model, prompt], sort_keys=True)
        n = seen[key]
        seen[key] += 1
        out = responder(model, prompt)
        return change(out) if uniform([key, n], seed) < rate else out

    return answer

NOWHERE = "http://127.0.0.1:9/v1"  # the discard port: nothing answers there, the fake provider does


def fake_model(input_per_mtok: float = 1.0, output_per_mtok: float = 1.0, **config: Any) -> ModelConfig:
    """A model entry for settings, priced in USD per 1M tokens, that only a fake provider answers."""
    return ModelConfig(api_base=NOWHERE, input_per_mtok=input_per_mtok, output_per_mtok=output_per_mtok, **config)


class FakeProvider:
    def __init__(self, responder: Responder | None = None, *, outputs: Iterable[str] = (), usage: bool = True,
                 latency_s: float = 0.0, latency: Latency | None = None):
        self.responder = responder
        self.usage = usage
        self.latency_s = latency_s
        self.latency = latency
        self._latency_calls: Counter[str] = Counter()
        self.calls: list[dict[str, Any]] = []
        self.attempts = 0
        self._queue = list(outputs)
        self._faults: list[Retryable | Fatal] = []

    def queue(self, *outputs: str) -> None:
        self._queue.extend(outputs)

    def fail(self, *faults: Retryable | Fatal) -> None:
        """Raise these on the next attempts, in order, before answering again."""
        self._faults.extend(faults)

    async def call(self, model: ResolvedModel, prompt: Prompt, params: dict[str, Any]) -> RawReply:
        self.attempts += 1
        if self.latency is None and self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self._faults:
            raise self._faults.pop(0)
        if self.responder is not None:
            output = self.responder(model.id, prompt)
        elif self._queue:
            output = self._queue.pop(0)
        else:
            raise AssertionError(f"FakeProvider: no queued output left for this call to {model.id}")
        if self.latency is not None:  # answered first, so the answers do not depend on the delays' order
            key = json.dumps([model.id, prompt], sort_keys=True)
            n = self._latency_calls[key]
            self._latency_calls[key] += 1
            await asyncio.sleep(max(0.0, self.latency(model.id, prompt, n)))
        output, output_tokens = _cut(output, params.get("max_tokens"))
        input_tokens = count_message_tokens(prompt) if isinstance(prompt, list) else count_tokens(prompt)
        self.calls.append({"model": model.id, "prompt": prompt, "params": dict(params), "seed": params.get("seed"),
                           "output": output, "input_tokens": input_tokens, "output_tokens": output_tokens})
        if not self.usage:
            return RawReply(output, None, None)
        return RawReply(output, input_tokens, output_tokens)


def _cut(output: str, max_tokens: Any) -> tuple[str, int]:
    """The answer as a provider returns it: at most `max_tokens` tokens (finish reason 'length')."""
    tokens = tiktoken_encoding().encode(output, disallowed_special=())
    if isinstance(max_tokens, int) and len(tokens) > max_tokens:
        return tiktoken_encoding().decode(tokens[:max_tokens]), max_tokens
    return output, len(tokens)
