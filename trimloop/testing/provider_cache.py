"""A provider's prompt cache as it bills, for the fake server and the savings bench.

`PromptCache` keeps the token prefixes of earlier prompts for `ttl_s` after their last use and
answers, for a new prompt, how many of its tokens are read from the cache and how many written:

- OpenAI (automatic): the longest cached prefix of 1,024 + 128·k tokens (cached_tokens); nothing
  is billed for writing;
- Anthropic (explicit): the prefix up to the caller's breakpoint (`cache_control`), if it reaches the
  model's minimum: read when cached, else written (cache_creation_input_tokens).

Prompts are token sequences laid out like OpenAI's chat accounting (3 tokens before each message's
content, 1 after, 3 to prime the reply), so their lengths equal `count_message_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from trimloop.core.catalog import tiktoken_encoding
from trimloop.core.pricing import CacheRule

_ROLE = {"system": -1, "user": -2, "assistant": -3}


@lru_cache(maxsize=4096)
def _encode(text: str) -> tuple[int, ...]:
    return tuple(tiktoken_encoding().encode(text, disallowed_special=()))


def chat_tokens(messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """The prompt's token sequence and, per message, the position where its content ends."""
    tokens: list[int] = []
    ends: list[int] = []
    for message in messages:
        marker = _ROLE.get(str(message.get("role")), -4)
        tokens += [marker, marker, marker]
        tokens += _encode(str(message.get("content", "")))
        ends.append(len(tokens))
        tokens.append(-5)
    tokens += [-6, -6, -6]
    return tokens, ends


@dataclass
class PromptCache:
    rule: CacheRule
    ttl_s: float = 300.0
    _seen: dict[tuple[str, int, int], float] = field(default_factory=dict)  # (model, length, hash) → last use

    def bill(self, model: str, tokens: list[int], now: float, breakpoint: int | None = None) -> tuple[int, int]:
        """(cached, written) tokens of this prompt, and remember it."""
        if self.rule.automatic:
            lengths = [n for n in range(self.rule.minimum, len(tokens) + 1, self.rule.step)]
            cached = 0
            for n in lengths:
                key = (model, n, hash(tuple(tokens[:n])))
                last = self._seen.get(key)
                if last is not None and now - last <= self.ttl_s:
                    cached = n
                self._seen[key] = now
            return cached, 0
        if breakpoint is None or breakpoint < self.rule.minimum:
            return 0, 0
        key = (model, breakpoint, hash(tuple(tokens[:breakpoint])))
        last = self._seen.get(key)
        self._seen[key] = now
        if last is not None and now - last <= self.ttl_s:
            return breakpoint, 0
        return 0, breakpoint
