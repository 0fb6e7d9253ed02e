"""`executor.OwnLoops`: work runs on a thread and an event loop of its own with a gateway for that
loop, and closing the executor cancels it, waits until it has unwound, and starts nothing new."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from trimloop.api.executor import Closed, OwnLoops


class LoopGateway:
    """Stands for the real gateway's loop handling: a copy per loop, each closed when its loop is done."""

    def __init__(self, made: list[LoopGateway] | None = None):
        self.made = made if made is not None else []
        self.closed = False

    def for_another_loop(self) -> LoopGateway:
        copy = LoopGateway(self.made)
        self.made.append(copy)
        return copy

    async def aclose(self) -> None:
        self.closed = True


def blocking_work(started: threading.Event, seen: dict[str, Any]) -> Any:
    async def work(gateway: LoopGateway) -> None:
        seen.update(thread=threading.current_thread().name, loop=asyncio.get_running_loop(), gateway=gateway)
        started.set()
        await asyncio.sleep(3600)  # until cancelled

    return work


async def test_a_run_is_cancelled_on_close_and_its_gateway_closed() -> None:
    template = LoopGateway()
    loops = OwnLoops(template, what="test run")
    started, seen = threading.Event(), {}
    running = asyncio.ensure_future(loops.run(blocking_work(started, seen), name="trimloop-run-7"))
    assert await asyncio.to_thread(started.wait, 30)
    assert seen["thread"] == "trimloop-run-7" and seen["loop"] is not asyncio.get_running_loop()
    assert seen["gateway"] is not template and template.made == [seen["gateway"]]

    await loops.close(wait_s=30)
    with pytest.raises(asyncio.CancelledError):
        await running
    assert seen["gateway"].closed and not template.closed  # the caller owns the template
    with pytest.raises(Closed):
        await loops.run(blocking_work(threading.Event(), {}), name="too-late")


async def test_work_on_a_plain_thread_is_cancelled_on_close() -> None:
    loops = OwnLoops(LoopGateway(), what="test pass")
    started, seen, outcome = threading.Event(), {}, {}

    def scheduler_thread() -> None:  # as APScheduler calls a pass
        try:
            loops.run_here(blocking_work(started, seen))
        except BaseException as exc:  # noqa: BLE001  (asserted below)
            outcome["raised"] = exc

    thread = threading.Thread(target=scheduler_thread, name="scheduler")
    thread.start()
    assert await asyncio.to_thread(started.wait, 30)
    assert seen["thread"] == "scheduler"
    await loops.close(wait_s=30)
    assert not thread.is_alive()  # close waited until it unwound
    assert isinstance(outcome["raised"], asyncio.CancelledError) and seen["gateway"].closed
    with pytest.raises(Closed):
        loops.run_here(blocking_work(threading.Event(), {}))


async def test_results_and_errors_come_back_to_the_caller() -> None:
    loops = OwnLoops(LoopGateway())

    async def answer(gateway: LoopGateway) -> str:
        return threading.current_thread().name

    async def fail(gateway: LoopGateway) -> None:
        raise ValueError("broken run")

    assert await loops.run(answer, name="worker-thread") == "worker-thread"
    with pytest.raises(ValueError, match="broken run"):
        await loops.run(fail, name="failing")
    assert await asyncio.to_thread(loops.run_here, answer) != threading.current_thread().name  # the caller's thread
    await loops.close(wait_s=5)
