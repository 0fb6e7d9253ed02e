"""A guarded child (how the bundled models' servers run) stops once its parent is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SPAWN = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "trimloop.core.orphan_guard", str(__import__("os").getpid()),
                          "http.server", "0", "--bind", "127.0.0.1"], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return " Z " not in state and "zombie" not in state


def test_the_child_stops_after_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", SPAWN], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())  # type: ignore[union-attr]
    try:
        time.sleep(1.0)
        assert _alive(child), "the guarded child should run while its parent lives"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child), "the guarded child outlived its killed parent"
    finally:
        parent.stdout.close()  # type: ignore[union-attr]
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_usage_error_names_the_arguments():
    done = subprocess.run([sys.executable, "-m", "trimloop.core.orphan_guard", "not-a-pid"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0 and "PARENT_PID MODULE" in done.stderr
