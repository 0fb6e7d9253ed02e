"""Where runs execute: one gateway factory, and one executor that gives each piece of work a thread
and an event loop of its own, with a gateway for that loop, and cancels it when the host stops.

The optimizer writes to the database synchronously; on the server's loop a write waiting for
SQLite's lock would stall every request (bench/soak.py measured 60 s stalls, then "database is
locked"). So the API's runs (`runner.RunScheduler`) and the scheduler's passes inside the server
(`scheduler.HostedPasses`) each run on a loop of their own. HTTP sessions belong to the loop that
made them, so each loop gets `gateway.for_another_loop()`: same settings, response cache and model
starter. Heartbeats are `optimizer.queue.execute_claimed`'s; a cancelled run's heartbeat goes
stale and the next worker resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from trimloop.core.settings import Settings

log = logging.getLogger("trimloop.api.executor")
CLOSE_WAIT_S = 30.0  # how long a stopping host waits for its work to unwind
T = TypeVar("T")


class SharedStarter:
    """A `LazyStarter` that several loops' gateways may call at once: a bundled model is started
    once, by whichever needs it first, and stopped with `stop()`."""

    def __init__(self, starter: Any):
        self.starter, self._lock = starter, threading.Lock()

    def __call__(self, model_id: str) -> None:
        with self._lock:
            self.starter(model_id)

    def stop(self) -> None:
        with self._lock:
            self.starter.stop()


def real_gateway(settings: Settings, engine: Engine) -> tuple[Any, SharedStarter]:
    """The gateway factory: the real gateway with the response cache in the database, and the
    starter of the bundled models it uses (shared by its `for_another_loop()` copies); stop the
    starter when done."""
    from trimloop.core.gateway import Gateway
    from trimloop.core.local_models import LazyStarter

    starter = SharedStarter(LazyStarter(settings))
    return Gateway(settings, engine=engine, before_first_call=starter), starter


class Closed(Exception):
    """The executor is closing: the work was not started."""


class OwnLoops:
    """Runs work as `work(gateway)` on a loop of its own, with a gateway for that loop made from
    `gateway`; `close()` cancels the work in flight and waits (bounded) until it has unwound, so
    none still holds a database connection or a model call when the host is gone."""

    def __init__(self, gateway: Any, *, what: str = "work"):
        self.gateway, self.what = gateway, what
        self._lock = threading.Condition()
        self._inflight: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = {}
        self._busy = 0  # pieces of work started and not yet unwound
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def run_here(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run the work on a new event loop on this thread (a plain thread, e.g. the scheduler's).
        Raises Closed when the executor is closing, CancelledError when `close()` cancelled it."""
        with self._lock:
            if self._closing:
                raise Closed()
            self._busy += 1
        try:
            return asyncio.run(self._guarded(work))
        finally:
            self._unwound()

    async def run(self, work: Callable[[Any], Awaitable[T]], *, name: str) -> T:
        """From an event loop: run the work on a daemon thread named `name` with its own loop; wait
        for it. Raises what the work raised (Closed, CancelledError when `close()` cancelled it)."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if finished.done():
                return
            if error is None:
                finished.set_result(result)
            else:
                finished.set_exception(error)

        def thread() -> None:
            result, error = None, None
            try:
                result = asyncio.run(self._guarded(work))
            except asyncio.CancelledError:
                error = asyncio.CancelledError()
            except BaseException as exc:  # handed to the caller's loop
                error = exc
            finally:
                self._unwound()
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the caller's loop is closed: the host stopped while the work unwound
                pass

        with self._lock:
            if self._closing:
                raise Closed()
            self._busy += 1
        threading.Thread(target=thread, name=name, daemon=True).start()
        return await finished

    async def _guarded(self, work: Callable[[Any], Awaitable[T]]) -> T:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            if self._closing:  # the host stopped before the thread got going
                raise Closed()
            self._inflight[id(task)] = (asyncio.get_running_loop(), task)
        gateway = self.gateway.for_another_loop() if hasattr(self.gateway, "for_another_loop") else self.gateway
        try:
            return await work(gateway)
        finally:
            with self._lock:
                self._inflight.pop(id(task), None)
            if gateway is not self.gateway:
                await gateway.aclose()

    def _unwound(self) -> None:
        with self._lock:
            self._busy -= 1
            self._lock.notify_all()

    async def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """No new work; cancel what is in flight and wait (bounded) until it has unwound."""
        with self._lock:
            self._closing = True
            inflight = list(self._inflight.values())
        for loop, task in inflight:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # that loop just finished
                pass
        deadline = time.monotonic() + wait_s

        def wait() -> int:
            with self._lock:
                while self._busy and time.monotonic() < deadline:
                    self._lock.wait(max(0.0, deadline - time.monotonic()))
                return self._busy

        left = await asyncio.to_thread(wait)
        if left:
            log.warning("%d %s still unwinding; its run resumes on the next worker", left, self.what)
