"""Run a DuckDB call in a worker thread so the event loop keeps serving, and stop it when asked.

A query stops on a CancelRequest (RunningQuery.interrupt), when its statement timeout passes, or when
its client disconnects; each raises QueryCanceled (57014) with PostgreSQL's wording.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import duckdb

from pgerrors import QueryCanceled, StatementTooComplex

T = TypeVar("T")
POLL_SECONDS = 0.05


class RunningQuery:
    """The cursor a session is running, so a CancelRequest from another socket can interrupt it."""

    def __init__(self) -> None:
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def attach(self, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._cursor = cursor

    def detach(self) -> None:
        with self._lock:
            self._cursor = None

    def interrupt(self) -> None:
        with self._lock:
            if self._cursor is not None:
                self._cursor.interrupt()


PLAN_SECONDS = 5.0


async def plan_off_loop(work: Callable[..., T], *args: object) -> T:
    """Parse, check or plan in a worker thread so a heavy statement never stalls other sessions;
    refused with 54001 when it takes longer than PLAN_SECONDS (the size limits in rewriter.parse keep
    the thread's remaining work bounded)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(work, *args), PLAN_SECONDS)
    except TimeoutError:
        raise StatementTooComplex(
            f"this statement took more than {PLAN_SECONDS:g} s to plan",
            hint="Split the question into smaller ones.",
        ) from None


@dataclass
class Limits:
    """What may stop a statement besides a cancel: a timeout and the client going away."""

    timeout_seconds: float | None = None
    disconnected: Callable[[], bool] = field(default=lambda: False)


async def run_interruptible(
    cursor: duckdb.DuckDBPyConnection, work: Callable[[], T], running: RunningQuery, limits: Limits
) -> T:
    loop = asyncio.get_running_loop()
    deadline = None if limits.timeout_seconds is None else loop.time() + limits.timeout_seconds
    running.attach(cursor)
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
                cursor.interrupt()
            elif limits.disconnected():
                reason = "client disconnect"
                cursor.interrupt()
        return future.result()
    except duckdb.InterruptException as err:
        raise QueryCanceled(f"canceling statement due to {reason}") from err
    finally:
        running.detach()
