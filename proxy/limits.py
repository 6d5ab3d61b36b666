"""Rate limits per user, connection caps and login throttling.

`RateLimiter` is a token bucket per key: `per_minute` queries may run back to back, then one more
each 60/per_minute seconds. The key is the policy's user name (never something the client picks,
such as its dbname). It limits queries that read a dataset (answered, re-served or refused after
planning) and data-less statements; catalog queries, SET/SHOW and the free post-processing
functions are not counted, so BI tools browsing schemas are never throttled.

`LoginThrottle` counts failed logins per user name and per client address over a sliding minute;
past either limit, further attempts are refused before any password is checked, for known and
unknown user names alike (so it reveals nothing about which names exist).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from pgerrors import InvalidAuthorization, TooManyRequests


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


@dataclass
class LoginThrottle:
    per_user: int  # failures a user name may have in `window` seconds; 0: no limit
    per_address: int  # failures a client address may have in `window` seconds; 0: no limit
    window: float = 60.0
    _failures: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (kind, key) → times

    def admit(self, user: str, address: str, now: float | None = None) -> None:
        """Raise 28000 while `user` or `address` is past its failure limit."""
        now = time.monotonic() if now is None else now
        for kind, key, limit in (("user", user, self.per_user), ("address", address, self.per_address)):
            times = self._recent(kind, key, now)
            if limit and len(times) >= limit:
                wait = times[0] + self.window - now
                whom = f'user "{user}"' if kind == "user" else "this client address"
                raise InvalidAuthorization(
                    f"too many failed login attempts for {whom}",
                    hint=f"Try again in {max(wait, 1.0):.0f} s. Logins are throttled after "
                    f"{limit} failures a minute (max_login_failures_per_{kind}).",
                )

    def failed(self, user: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for kind, key in (("user", user), ("address", address)):
            times = self._recent(kind, key, now)
            times.append(now)
            self._failures[(kind, key)] = times
        if len(self._failures) > 100_000:  # a flood of distinct names: forget the idle ones
            for item in [k for k, v in self._failures.items() if not v or v[-1] < now - self.window]:
                del self._failures[item]

    def _recent(self, kind: str, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get((kind, key), ()) if t > now - self.window]
        if times:
            self._failures[(kind, key)] = times
        else:
            self._failures.pop((kind, key), None)
        return times
