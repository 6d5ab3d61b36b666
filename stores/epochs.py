"""Pseudonym epochs of an activity dataset: which keys an event is written under, and which one
key each count is taken in.

An epoch is the span of days whose events get one key. Epochs are calendar months (UTC) unless a
key rotation (`privacylens rotate-salt --effective DATE`) starts one on DATE. Every count is taken
in the pseudonyms of one epoch, so each person is one pseudonym in it:

- the DAU of day d in the epoch holding d;
- a window ending on day t in the epoch that *counts* t: the one holding t, leaving out the
  rotations whose `counts_from` is after t.

An event of day d is written under its own epoch's key and under the key of every epoch that
counts a window containing d, so a window finds all its days under the one key it is counted in,
however many epoch boundaries it crosses.

A calendar epoch counts from its first day: its boundaries are known in advance, so the events its
first windows reach back to were written under its key when they were stored (the key is created
by the first event that needs it). A rotation is decided later: events already stored cannot be
re-keyed (their raw ids are gone), so its epoch counts only the windows all of whose days can
still be written after it was decided. Until then the window keeps the key it had before the
rotation, and that key keeps being written: this overlap is what keeps one person from counting
twice in any window. (A rotation decided later never changes the key of a window that can hold
an event stored earlier: tested exhaustively in tests/test_epochs.py.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Epoch:
    name: str  # "2025-10" (a calendar month) or "2025-10-15" (started by a rotation)
    starts: dt.date
    ends: dt.date  # first day after it
    counts_from: dt.date  # the first window end counted in its pseudonyms (see the module text)


@dataclass(frozen=True)
class Rotation:
    effective: dt.date
    counts_from: dt.date


def rotation(effective: dt.date, latest_stored: dt.date, window_days: int) -> Rotation:
    """A rotation starting on `effective`, decided when no stored event is later than
    `latest_stored`: its epoch counts the windows whose first day comes after that.

    >>> rotation(dt.date(2025, 12, 20), dt.date(2025, 11, 10), 30).counts_from  # scheduled ahead
    datetime.date(2025, 12, 20)
    >>> rotation(dt.date(2025, 11, 12), dt.date(2025, 11, 10), 30).counts_from  # the overlap
    datetime.date(2025, 12, 10)
    """
    if effective <= latest_stored:
        raise ValueError(
            f"a rotation must start after the latest day events may be stored for ({latest_stored})"
        )
    return Rotation(effective, max(effective, latest_stored + dt.timedelta(days=window_days)))


class Calendar:
    """The epochs of one dataset, from its rotations (a pure function of them)."""

    def __init__(self, rotations: Sequence[Rotation] = ()) -> None:
        self.rotations = {r.effective: r for r in rotations}
        self._starts = sorted(self.rotations)
        self._counting: dict[dt.date, Epoch] = {}  # a calendar is built per batch or count: cache

    def holding(self, day: dt.date) -> Epoch:
        """The epoch `day` falls in (whose key its DAU is counted in)."""
        return self._holding(day, self._starts)

    def counting(self, end: dt.date) -> Epoch:
        """The epoch whose pseudonyms count a window ending on `end`: the one holding `end` among
        the rotations already counting by then (one still in its overlap is left out, so the
        window is counted where it was before that rotation was decided)."""
        if end not in self._counting:
            in_force = [r for r in self._starts if self.rotations[r].counts_from <= end]
            self._counting[end] = self._holding(end, in_force)
        return self._counting[end]

    def _holding(self, day: dt.date, rotations: list[dt.date]) -> Epoch:
        month = day.replace(day=1)
        following = (month + dt.timedelta(days=32)).replace(day=1)
        starts = max([month, *(r for r in rotations if month <= r <= day)])
        ends = min([following, *(r for r in rotations if day < r < following)])
        if starts in rotations:
            return Epoch(f"{starts:%Y-%m-%d}", starts, ends, self.rotations[starts].counts_from)
        return Epoch(f"{starts:%Y-%m}", starts, ends, starts)

    def written(self, day: dt.date, window_days: int) -> list[Epoch]:
        """The epochs an event of `day` is written under: its own, and each one counting a window
        (of up to `window_days` days) that contains `day`."""
        found = {self.holding(day).name: self.holding(day)}
        for k in range(window_days):
            epoch = self.counting(day + dt.timedelta(days=k))
            found.setdefault(epoch.name, epoch)
        return sorted(found.values(), key=lambda e: e.starts)
