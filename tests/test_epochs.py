"""Pseudonym epochs (stores/epochs.py), pure: calendar months by default; a rotation starts a new
epoch without changing the key of any window that can contain an event stored before it."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from stores.epochs import Calendar, rotation

DAY = dt.timedelta(days=1)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + k * DAY for k in range((last - first).days + 1)]


def test_without_rotations_epochs_are_calendar_months() -> None:
    calendar = Calendar()
    october = calendar.holding(dt.date(2025, 10, 17))
    assert (october.name, october.starts, october.ends) == (
        "2025-10",
        dt.date(2025, 10, 1),
        dt.date(2025, 11, 1),
    )
    assert calendar.counting(dt.date(2025, 10, 1)).name == "2025-10"
    assert [e.name for e in calendar.written(dt.date(2025, 10, 2), 30)] == ["2025-10"]
    assert [e.name for e in calendar.written(dt.date(2025, 10, 3), 30)] == ["2025-10", "2025-11"]
    assert [e.name for e in calendar.written(dt.date(2026, 1, 31), 30)] == ["2026-01", "2026-02", "2026-03"]


def test_a_rotation_splits_its_month_and_overlaps_until_a_window_is_all_new() -> None:
    made = rotation(dt.date(2025, 10, 12), latest_stored=dt.date(2025, 10, 10), window_days=30)
    assert made.counts_from == dt.date(2025, 11, 9)  # the first window with no day before 11 October
    calendar = Calendar([made])
    assert calendar.holding(dt.date(2025, 10, 11)).name == "2025-10"
    new = calendar.holding(dt.date(2025, 10, 12))
    assert (new.name, new.starts, new.ends) == ("2025-10-12", dt.date(2025, 10, 12), dt.date(2025, 11, 1))
    assert calendar.holding(dt.date(2025, 10, 11)).ends == dt.date(2025, 10, 12)
    # its own days' DAU are counted under the new key; windows still under the old one
    assert calendar.counting(dt.date(2025, 10, 20)).name == "2025-10"
    assert [e.name for e in calendar.written(dt.date(2025, 10, 20), 30)] == [
        "2025-10",
        "2025-10-12",
        "2025-11",
    ]
    assert calendar.counting(dt.date(2025, 11, 1)).name == "2025-11"  # November's key was made ahead
    scheduled = Calendar([rotation(dt.date(2025, 12, 20), dt.date(2025, 11, 10), 30)])
    assert scheduled.counting(dt.date(2025, 12, 20)).name == "2025-12-20"
    assert scheduled.counting(dt.date(2025, 12, 19)).name == "2025-12"
    with pytest.raises(ValueError, match="after the latest day"):
        rotation(dt.date(2025, 10, 10), dt.date(2025, 10, 10), 30)


def test_every_window_finds_all_its_days_under_the_one_key_it_is_counted_in() -> None:
    calendar = Calendar(
        [
            rotation(dt.date(2025, 10, 12), dt.date(2025, 10, 10), 30),
            rotation(dt.date(2025, 11, 1), dt.date(2025, 10, 20), 30),  # on a month's first day
            rotation(dt.date(2025, 11, 5), dt.date(2025, 11, 3), 7),
            rotation(dt.date(2026, 2, 27), dt.date(2026, 1, 2), 30),
        ]
    )
    for window in (1, 7, 30):
        for end in days(dt.date(2025, 9, 1), dt.date(2026, 4, 30)):
            counted = calendar.counting(end).name
            for day in days(end - (window - 1) * DAY, end):
                assert counted in {e.name for e in calendar.written(day, 30)}, (end, day, window)


@pytest.mark.parametrize("window", [1, 3, 7, 30])
def test_a_rotation_keeps_every_count_of_stored_events_whole(window: int) -> None:
    """Rotations decided one after another, each when events up to some day may be stored: each
    stored day keeps its epoch (its DAU key), and every window that can contain a stored day is
    counted under a key that day's events were written under when they were stored."""
    start = dt.date(2025, 9, 1)
    for offsets in itertools.combinations(range(0, 70, 6), 3):
        rotations, calendar = [], Calendar()
        for offset in offsets:
            decided = start + offset * DAY  # events up to this day may be stored
            stored = {day: {e.name for e in calendar.written(day, window)} for day in days(start, decided)}
            for ahead in (1, 3, window, 40):
                effective = decided + ahead * DAY
                if any(r.effective == effective for r in rotations):
                    continue
                after = Calendar([*rotations, rotation(effective, decided, window)])
                for day in days(start, decided):
                    assert after.holding(day).name == calendar.holding(day).name
                for end in days(start, decided + (window - 1) * DAY):
                    counted = after.counting(end).name
                    for day in days(max(start, end - (window - 1) * DAY), min(end, decided)):
                        assert counted in stored[day], (offsets, effective, end, day)
            rotations.append(rotation(decided + 3 * DAY, decided, window))
            calendar = Calendar(rotations)
