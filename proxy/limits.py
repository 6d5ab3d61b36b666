"""Rate limits per user, connection caps and login throttling.

`RateLimiter` is a token bucket per key: `per_minute` queries may run back to back, then one more
each 60/per_minute seconds. The key is the policy's user name (never something the client picks,
such as its dbname). It limits queries that read a dataset (answered, re-served or refused after
planning) and data-less statements; catalog queries, SET/SHOW and the free post-processing
functions are not counted, so BI tools browsing schemas are never throttled.

`LoginThrottle` counts failed logins per user name and per client address over a sliding minute;
past either limit, further attempts are refused before any password is checked, for known and
unknown user names alike (so it reveals nothing about which names exist).

Each keeps its state in memory by default; a server with several worker processes gives them one
`proxy.shared_limits.SharedLimits` instead, so the limits hold across the workers, not per worker.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pgerrors import InvalidAuthorization, TooManyRequests

Bucket = tuple[float, float]  # (tokens, at)


class LimitState(Protocol):
    """Where the limits' counts live (in this process, or shared by worker processes)."""

    def bucket(self, key: tuple[str, str], change: Callable[[Bucket | None], Bucket]) -> Bucket: ...
    def open_connection(self, user: str, check: Callable[[int, int], None]) -> None: ...
    def close_connection(self, user: str) -> None: ...
    def failures(self, kind: str, key: str, since: float) -> list[float]: ...
    def add_failure(self, kind: str, key: str, at: float, since: float) -> None: ...


@dataclass
class MemoryLimits:
    """The limits' counts in this process."""

    _buckets: dict[tuple[str, str], Bucket] = field(default_factory=dict)
    _open: Counter[str] = field(default_factory=Counter)
    _failures: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (kind, key) → times
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def bucket(self, key: tuple[str, str], change: Callable[[Bucket | None], Bucket]) -> Bucket:
        with self._lock:
            new = self._buckets[key] = change(self._buckets.get(key))
        return new

    def open_connection(self, user: str, check: Callable[[int, int], None]) -> None:
        with self._lock:
            check(sum(self._open.values()), self._open[user])
            self._open[user] += 1

    def close_connection(self, user: str) -> None:
        with self._lock:
            self._open[user] -= 1
            if self._open[user] <= 0:
                del self._open[user]

    def failures(self, kind: str, key: str, since: float) -> list[float]:
        with self._lock:
            times = [t for t in self._failures.get((kind, key), ()) if t > since]
            if times:
                self._failures[(kind, key)] = times
            else:
                self._failures.pop((kind, key), None)
        return times

    def add_failure(self, kind: str, key: str, at: float, since: float) -> None:
        with self._lock:
            self._failures[(kind, key)] = [*(t for t in self._failures.get((kind, key), ()) if t > since), at]
            if len(self._failures) > 100_000:  # a flood of distinct names: forget the idle ones
                for item in [k for k, v in self._failures.items() if not v or v[-1] <= since]:
                    del self._failures[item]


@dataclass
class RateLimiter:
    per_minute: int  # 0: no limit
    state: LimitState = field(default_factory=MemoryLimits)

    def take(self, tenant: str, user: str, now: float | None = None) -> None:
        """Spend one query of (tenant, user)'s allowance, or raise 53300 saying when to retry."""
        if self.per_minute <= 0:
            return
        now = time.monotonic() if now is None else now  # one clock for every process on the host
        rate = self.per_minute / 60.0
        full = float(self.per_minute)
        refused: list[float] = []

        def spend(bucket: Bucket | None) -> Bucket:
            tokens, at = bucket if bucket is not None else (full, now)
            tokens = min(full, tokens + max(now - at, 0.0) * rate)
            if tokens < 1.0:
                refused.append(tokens)
                return tokens, now
            return tokens - 1.0, now

        self.state.bucket((tenant, user), spend)
        if refused:
            wait = (1.0 - refused[0]) / rate
            where = f' on tenant "{tenant}"' if tenant else ""
            raise TooManyRequests(
                f'rate limit reached: at most {self.per_minute} queries a minute for user "{user}"{where}',
                hint=f"Retry in {wait:.1f} s. An admin sets the limit (max_queries_per_minute).",
            )


@dataclass
class ConnectionCaps:
    total: int  # 0: no cap
    per_user: int  # 0: no cap
    state: LimitState = field(default_factory=MemoryLimits)

    def open(self, user: str) -> None:
        """Count a new authenticated connection of `user`, or raise 53300 (nothing is counted)."""

        def check(open_total: int, open_by_user: int) -> None:
            if self.total and open_total >= self.total:
                raise TooManyRequests(
                    "sorry, too many clients already",
                    hint=f"The server accepts {self.total} connections; close idle ones or ask an admin.",
                )
            if self.per_user and open_by_user >= self.per_user:
                raise TooManyRequests(
                    f'too many connections for user "{user}"',
                    hint=f"Each user may hold {self.per_user} connections; close idle ones "
                    "(connection pools).",
                )

        self.state.open_connection(user, check)

    def close(self, user: str) -> None:
        self.state.close_connection(user)


@dataclass
class LoginThrottle:
    per_user: int  # failures a user name may have in `window` seconds; 0: no limit
    per_address: int  # failures a client address may have in `window` seconds; 0: no limit
    window: float = 60.0
    state: LimitState = field(default_factory=MemoryLimits)

    def admit(self, user: str, address: str, now: float | None = None) -> None:
        """Raise 28000 while `user` or `address` is past its failure limit."""
        now = time.monotonic() if now is None else now
        for kind, key, limit in (("user", user, self.per_user), ("address", address, self.per_address)):
            if not limit:
                continue
            times = self.state.failures(kind, key, now - self.window)
            if len(times) >= limit:
                wait = min(times) + self.window - now
                whom = f'user "{user}"' if kind == "user" else "this client address"
                raise InvalidAuthorization(
                    f"too many failed login attempts for {whom}",
                    hint=f"Try again in {max(wait, 1.0):.0f} s. Logins are throttled after "
                    f"{limit} failures a minute (max_login_failures_per_{kind}).",
                )

    def failed(self, user: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for kind, key in (("user", user), ("address", address)):
            self.state.add_failure(kind, key, now, now - self.window)
