"""Run a Python module as a child that stops when the process that started it is gone.

`python -m trimloop.core.orphan_guard PARENT_PID MODULE [ARGS…]` runs MODULE as `__main__` and
watches its parent: once PARENT_PID is no longer its parent (it exited, or was killed with
SIGKILL and could run no cleanup), the child sends itself SIGTERM, so a server shuts down
cleanly, and exits for good a few seconds later. The bundled models' llama.cpp servers run
this way, so a killed `trimloop` never leaves them holding memory, CPU and ports.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

POLL_S = 0.5
GRACE_S = 5.0


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(0)


def main() -> None:
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m trimloop.core.orphan_guard PARENT_PID MODULE [ARGS…]")
    parent, module = int(sys.argv[1]), sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    threading.Thread(target=_watch, args=(parent,), name="orphan-guard", daemon=True).start()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
