"""Shared bench helpers: the fake OpenAI server in its own process, machine facts."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from trimloop.core.fake_openai import free_port


@contextmanager
def fake_openai(latency_ms: float) -> Iterator[str]:
    """A fixed-latency OpenAI-compatible server on loopback, in its own process; yields /v1 URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trimloop.core.fake_openai", "--port", str(port), "--latency-ms", str(latency_ms)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v1/models", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
