"""The pseudonym key registry (stores/pseudonyms.py) on a SQLite file and on a real PostgreSQL:
one random key per epoch whoever asks first, HMAC-SHA256 as the standard defines it, keys for the
next epoch near an epoch's end, and crypto-shredding at retention."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading

import pytest

from stores.pseudonyms import PseudonymKeys, ShreddedKey


def test_one_key_per_epoch_whoever_asks_first(store_location: str) -> None:
    stores = [PseudonymKeys(store_location) for _ in range(4)]  # four processes' worth of connections
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda s=s: keys.append(s.key("activity", dt.date(2025, 10, 7))))
        for s in stores
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    october, november = (stores[0].key("activity", dt.date(2025, m, 1)) for m in (10, 11))
    assert october == keys[0] != november
    assert stores[0].key("other", dt.date(2025, 10, 7)) != october  # datasets never share keys
    expected = hmac.new(october, b"user-42", hashlib.sha256).hexdigest()
    assert stores[1].pseudonym("activity", "user-42", dt.date(2025, 10, 31)) == expected
    for store in stores:
        store.close()


def test_events_near_an_epoch_end_are_also_keyed_for_the_next(store_location: str) -> None:
    keys = PseudonymKeys(store_location)

    def epochs(day: int, window: int) -> list[str]:
        return [e for e, _ in keys.keys_for_event("activity", dt.date(2025, 10, day), window)]

    # the 30-day window ending on 1 November covers 3 October to 1 November
    assert epochs(1, 30) == epochs(2, 30) == ["2025-10"]
    assert epochs(3, 30) == epochs(31, 30) == ["2025-10", "2025-11"]
    assert epochs(25, 7) == ["2025-10"] and epochs(26, 7) == ["2025-10", "2025-11"]
    # February is shorter than a 30-day window: 31 January is also in the window ending 1 March
    january_31 = keys.keys_for_event("activity", dt.date(2026, 1, 31), 30)
    assert [e for e, _ in january_31] == ["2026-01", "2026-02", "2026-03"]
    assert [e for e, _ in keys.keys_for_event("activity", dt.date(2026, 1, 30), 30)] == ["2026-01", "2026-02"]
    keys.close()


def test_erasure_pseudonyms_and_shredding(store_location: str) -> None:
    keys = PseudonymKeys(store_location)
    for month in (8, 9, 10):
        keys.key("activity", dt.date(2025, month, 15))
    everywhere = keys.pseudonyms_of("activity", "user-7")
    assert [e for e, _ in everywhere] == ["2025-08", "2025-09", "2025-10"]
    assert everywhere[2][1] == keys.pseudonym("activity", "user-7", dt.date(2025, 10, 1))
    assert keys.shred("activity", before=dt.date(2025, 10, 1)) == ["2025-08", "2025-09"]
    assert [e for e, _ in keys.pseudonyms_of("activity", "user-7")] == ["2025-10"]
    with pytest.raises(ShreddedKey):
        keys.pseudonym("activity", "user-7", dt.date(2025, 8, 3))  # a shredded epoch stays shredded
    assert keys.shred("activity", before=dt.date(2025, 10, 1)) == []
    keys.close()
