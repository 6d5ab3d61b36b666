"""Rate limits per (tenant, user) and connection caps. A tenant is the database name a client
connects to (`dbname=` in its connection string), so one login used by several teams is limited
per team.

`RateLimiter` is a token bucket per key: `per_minute` DP queries may run back to back, then one
more each 60/per_minute seconds. It limits queries that read a dataset (answered, re-served or
refused after planning); catalog queries, SET/SHOW and the free post-processing functions are not
counted, so BI tools browsing schemas are never throttled.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from pgerrors import TooManyRequests


@dataclass
class RateLimiter:
    per_minute: int  # 0: no limit
    _buckets: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # key → (tokens, at)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, tenant: str, user: str, now: float | None = None) -> None:
        """Spend one query of (tenant, user)'s allowance, or raise 53300 saying when to retry."""
        if self.per_minute <= 0:
            return
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, at = self._buckets.get((tenant, user), (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - at) * rate)
            if tokens < 1.0:
                self._buckets[(tenant, user)] = (tokens, now)
                wait = (1.0 - tokens) / rate
                where = f' on tenant "{tenant}"' if tenant else ""
                raise TooManyRequests(
                    f"rate limit reached: at most {self.per_minute} queries a minute "
                    f'for user "{user}"{where}',
                    hint=f"Retry in {wait:.1f} s. An admin sets the limit (max_queries_per_minute).",
                )
            self._buckets[(tenant, user)] = (tokens - 1.0, now)


@dataclass
class ConnectionCaps:
    total: int  # 0: no cap
    per_user: int  # 0: no cap
    _open: Counter[str] = field(default_factory=Counter)

    def open(self, user: str) -> None:
        """Count a new authenticated connection of `user`, or raise 53300 (nothing is counted)."""
        if self.total and sum(self._open.values()) >= self.total:
            raise TooManyRequests(
                "sorry, too many clients already",
                hint=f"The server accepts {self.total} connections; close idle ones or ask an admin.",
            )
        if self.per_user and self._open[user] >= self.per_user:
            raise TooManyRequests(
                f'too many connections for user "{user}"',
                hint=f"Each user may hold {self.per_user} connections; close idle ones (connection pools).",
            )
        self._open[user] += 1

    def close(self, user: str) -> None:
        self._open[user] -= 1
        if self._open[user] <= 0:
            del self._open[user]
