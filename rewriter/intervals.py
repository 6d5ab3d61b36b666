"""Interval text as PostgreSQL writes it: '6 hours', '1 day 2 hours', '90 min', '2 weeks'.

>>> parse_interval("1 day 6 hours")
datetime.timedelta(days=1, seconds=21600)
>>> parse_months("2 years 1 month")
[(2.0, 'year'), (1.0, 'month')]
"""

from __future__ import annotations

import datetime as dt
import re

SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
MONTHS = {"month": 1, "year": 12}
_PART = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_ALIASES = {"min": "minute", "sec": "second", "hr": "hour", "mon": "month", "yr": "year"}


def parse_months(text: str) -> list[tuple[float, str]]:
    """(amount, unit) pairs, units singular; ValueError when any part is not understood."""
    parts: list[tuple[float, str]] = []
    position = 0
    lowered = text.lower()
    for match in _PART.finditer(lowered):
        if match.start() != position:
            break
        amount, name = float(match.group(1)), match.group(2).rstrip("s")
        name = _ALIASES.get(name, name)
        if name not in SECONDS and name not in MONTHS:
            break
        parts.append((amount, name))
        position = match.end()
    if not parts or position != len(lowered):
        raise ValueError(f"interval '{text.strip()}' is not understood")
    return parts


def parse_interval(text: str) -> dt.timedelta:
    """A fixed-length interval (no months or years)."""
    total = 0.0
    for amount, unit in parse_months(text):
        if unit in MONTHS:
            raise ValueError(f"interval '{text}': months and years have no fixed length here")
        total += amount * SECONDS[unit]
    return dt.timedelta(seconds=total)
