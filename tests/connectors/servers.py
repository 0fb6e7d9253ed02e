"""Real servers for integration tests (MLflow, Phoenix), each from its own venv under .venvs/.

A server starts on a free loopback port in a fresh working folder, is polled on its health URL,
and is stopped by its process id (its whole process group) when the fixture ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def find_binary(name: str, env: str) -> Path:
    """The server's executable from $env or .venvs/<name>/bin, or skip with how to install it."""
    path = Path(os.environ.get(env) or ROOT / ".venvs" / name / "bin" / name)
    if not path.exists():
        pytest.skip(f"{name} server not installed at {path}: run scripts/test-servers.sh (or set {env})")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(args: list[str], *, health: str, env: dict[str, str], log: Path,
            timeout_s: float = 180.0) -> Iterator[subprocess.Popen[bytes]]:
    """Start `args`, wait until `health` answers 200, and stop the process group afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **env}, cwd=log.parent)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(health, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{args[0]} not healthy at {health} after {timeout_s}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
