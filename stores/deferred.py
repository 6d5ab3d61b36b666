"""Writes that may wait a moment, batched: one transaction (one fsync) for many.

A re-served answer releases nothing new, so its records (the audit row "query answered again" and
the released-answer row the detectors skip) need not hold up the answer: they are queued and written
by a background thread every `interval` seconds, in one transaction per batch. A synchronous write
through `flush(write)` commits everything queued before it in its own transaction, so rows keep the
order they were made in. What is queued when the process is killed with SIGKILL (at most `interval`
seconds of re-serves) is lost; SIGTERM and a normal stop write it (`close`). Budget-bearing writes
(debits, their audit rows, stored answers) are never deferred.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from stores.database import Database, Tx

log = logging.getLogger("privacylens.deferred")
T = TypeVar("T")
MAX_PENDING = 100_000  # past this, writes are made at once (a stuck database must not eat memory)


class DeferredWrites:
    def __init__(self, db: Database, interval: float = 0.05) -> None:
        self.db = db
        self.interval = interval
        self._pending: list[Callable[[Tx], object]] = []
        self._lock = threading.Lock()  # guards _pending
        self._writing = threading.Lock()  # one batch at a time, in order
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def add(self, write: Callable[[Tx], object]) -> None:
        """Queue a write (a function of the transaction) for the next batch."""
        with self._lock:
            if self._closed.is_set() or len(self._pending) >= MAX_PENDING:
                now = True
            else:
                now = False
                self._pending.append(write)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="deferred-writes", daemon=True)
                    self._thread.start()
        if now:
            self.flush(write)

    def flush(self, write: Callable[[Tx], T] | None = None) -> T | None:
        """Commit what is queued, and `write` after it, in one transaction; `write`'s result."""
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch and write is None:
                return None
            try:
                with self.db.write() as tx:
                    for queued in batch:
                        queued(tx)
                    return write(tx) if write is not None else None
            except BaseException:
                with self._lock:  # kept for the next batch; `write` fails to its caller
                    self._pending[:0] = batch
                raise

    def close(self) -> None:
        """Write what is queued and stop batching (later writes are made at once)."""
        self._closed.set()
        self.flush()

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the rows stay queued; the next round tries again
                log.exception("deferred writes failed; retrying")
