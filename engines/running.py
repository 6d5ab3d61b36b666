"""Run an engine call in a worker thread so the event loop keeps serving, and stop it when asked.

A query stops on a CancelRequest (RunningQuery.interrupt), when its statement timeout passes, or when
its client disconnects; each raises QueryCanceled (57014) with PostgreSQL's wording. Any engine
works: it hands over something with an `interrupt()` method (a DuckDB cursor, a PostgreSQL cancel,
a Spark job group), and whatever the interrupted call raises becomes the QueryCanceled.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pgerrors import QueryCanceled

T = TypeVar("T")
POLL_SECONDS = 0.05


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


class RunningQuery:
    """What a session is running, so a CancelRequest from another socket can interrupt it."""

    def __init__(self) -> None:
        self._handle: Interruptible | None = None
        self._lock = threading.Lock()
        self.interrupted = False

    def attach(self, handle: Interruptible) -> None:
        with self._lock:
            self._handle, self.interrupted = handle, False

    def detach(self) -> None:
        with self._lock:
            self._handle = None

    def interrupt(self) -> None:
        with self._lock:
            if self._handle is not None:
                self.interrupted = True
                self._handle.interrupt()


@dataclass
class Limits:
    """What may stop a statement besides a cancel: a timeout and the client going away."""

    timeout_seconds: float | None = None
    disconnected: Callable[[], bool] = field(default=lambda: False)


async def run_interruptible(
    handle: Interruptible, work: Callable[[], T], running: RunningQuery, limits: Limits
) -> T:
    loop = asyncio.get_running_loop()
    deadline = None if limits.timeout_seconds is None else loop.time() + limits.timeout_seconds
    running.attach(handle)
    future = asyncio.ensure_future(asyncio.to_thread(work))
    reason = "user request"
    try:
        while True:
            wait = POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - loop.time()))
            done, _ = await asyncio.wait({future}, timeout=wait)
            if done:
                break
            if deadline is not None and loop.time() >= deadline:
                reason = "statement timeout"
                running.interrupt()
            elif limits.disconnected():
                reason = "client disconnect"
                running.interrupt()
        return future.result()
    except Exception as err:
        if running.interrupted:
            raise QueryCanceled(f"canceling statement due to {reason}") from err
        raise
    finally:
        running.detach()
