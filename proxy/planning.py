"""Parsing, checking and planning run off the event loop, with a wall-clock limit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from pgerrors import StatementTooComplex

T = TypeVar("T")

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
