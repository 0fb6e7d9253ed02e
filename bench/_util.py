"""Shared bench helpers: the fake OpenAI server in its own process, machine facts."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager

from trimloop.testing.fake_openai import running


@contextmanager
def fake_openai(latency_ms: float) -> Iterator[str]:
    """A fixed-latency OpenAI-compatible server on loopback, in its own process; yields /v1 URL."""
    with running("--latency-ms", str(latency_ms)) as url:
        yield f"{url}/v1"


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
