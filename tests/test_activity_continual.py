"""Continual release (proxy/activity_continual.py): an epoch's MAU or DAU series from one flippancy-
capped tree, charged once per epoch. The tree's counts are checked against the capped presence of
each person computed independently from the raw events (with privacy.continual.capped_presence,
itself checked exhaustively), its noise against the tree's σ, and its charges, erasures and
refusals against the ledger."""

from __future__ import annotations

import datetime as dt
import math
import random
import threading
from pathlib import Path

import duckdb
import pytest
import yaml

from pgerrors import BudgetExhausted, InvalidParameterValue
from privacy.continual import capped_presence
from proxy.activity_continual import period_of, tree_noise
from proxy.activity_query import ActivityService
from rewriter.policy import load_policy
from stores.activity_input import Batch
from stores.database import open_database

DAY = dt.timedelta(days=1)
OCTOBER = [dt.date(2025, 10, 1) + k * DAY for k in range(31)]
NOW = dt.datetime(2026, 1, 15)


def service(tmp_path: Path, metric: str = "mau", cap: float = 10.0, changes: int = 4) -> ActivityService:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "datasets": {
                    "act": {
                        "kind": "activity",
                        "retention_days": 3000,
                        "mau": {"window_days": 7, "monthly_cap": cap},
                        "dau": {"monthly_cap": cap},
                        "continual": {"metric": metric, "epsilon": 1.0, "changes": changes},
                    }
                },
                "users": {},
            }
        )
    )
    return ActivityService(
        load_policy(policy), open_database(str(tmp_path / "ledger.sqlite")), tmp_path / "ev"
    )


def workload(seed: int = 3, people: int = 600) -> list[tuple[str, str, str]]:
    """Sessions of a few days with gaps, so presence switches (test data, not noise)."""
    rng = random.Random(seed)
    rows = []
    for person in range(people):
        day = dt.date(2025, 9, 20) + rng.randrange(20) * DAY
        while day <= dt.date(2025, 10, 31):
            for _ in range(rng.randrange(1, 5)):
                rows.append((f"p{person}", f"{day} {rng.randrange(24):02d}:00:00", "+"))
                day += DAY
            day += rng.randrange(1, 12) * DAY
    return rows


def capped_truth(rows: list[tuple[str, str, str]], window: int, changes: int) -> dict[dt.date, int]:
    """Σ over people of their capped presence on each October day (presence: active in the window)."""
    active: dict[str, set[dt.date]] = {}
    for user, ts, op in rows:
        if op == "+":
            active.setdefault(user, set()).add(dt.datetime.fromisoformat(ts).date())
    totals = dict.fromkeys(OCTOBER, 0)
    for days in active.values():
        present = [any(d - k * DAY in days for k in range(window)) for d in OCTOBER]
        for day, counted in zip(OCTOBER, capped_presence(present, changes), strict=True):
            totals[day] += counted
    return totals


@pytest.mark.parametrize(("metric", "window", "changes"), [("mau", 7, 4), ("dau", 1, 4), ("dau", 1, 3)])
def test_the_tree_counts_capped_presence_and_adds_only_its_noise(
    tmp_path: Path, metric: str, window: int, changes: int
) -> None:
    rows = workload()
    svc = service(tmp_path, metric, changes=changes)
    svc.ingest("act", Batch.of_rows(rows), "admin")
    released = svc.release_rows("act", metric, OCTOBER[0], OCTOBER[-1], None, "alice", now=NOW)
    truth = capped_truth(rows, window, changes)
    name, first = period_of(svc.store.keys.calendar("act"), metric, OCTOBER[5])
    assert (name, first) == ("2025-10", OCTOBER[0])
    closed = svc.trees.closed("act", metric, name)
    assert {
        first + i * DAY: c.exact for i, c in closed.items()
    } == truth  # the cap, in SQL, is the reference's
    noise, _ = tree_noise(svc.spec("act").continual)
    value = 1 if metric == "dau" else 2
    for row in released:
        nodes = bin((row[0] - first).days + 1).count("1")
        assert abs(row[value] - truth[row[0]]) < 5 * noise.scale * math.sqrt(nodes), row
        assert row[value + 1] < row[value] < row[value + 2]
    charged = [row[value + 3] for row in released]
    assert charged[0] == pytest.approx(1.0, abs=0.01) and not any(charged[1:])  # once for the epoch
    assert svc.releases.spent("act", metric, 202510) == pytest.approx(charged[0], abs=1e-5)
    again = svc.release_rows("act", metric, OCTOBER[0], OCTOBER[-1], None, "alice", now=NOW)
    assert [r[value] for r in again] == [r[value] for r in released] and all(
        r[-1] == "re-served" for r in again
    )
    states = list((tmp_path / "ev" / "act" / "tree").glob("*.parquet"))
    assert len(states) == 1  # earlier days' states swept
    (most,) = duckdb.connect().execute(f"SELECT max(used) FROM '{states[0]}'").fetchone()
    assert most <= changes


def test_days_are_closed_in_order_and_later_days_cost_nothing(tmp_path: Path) -> None:
    rows = workload(5, 300)
    svc = service(tmp_path)
    svc.ingest("act", Batch.of_rows(rows), "admin")
    (late,) = svc.release_rows("act", "mau", OCTOBER[20], OCTOBER[20], None, "alice", now=NOW)
    assert late[5] > 0 and len(svc.trees.closed("act", "mau", "2025-10")) == 21
    early = svc.release_rows("act", "mau", OCTOBER[0], OCTOBER[9], None, "alice", now=NOW)
    assert all(r[5] == 0.0 and r[-1] == "released" for r in early)
    truth = capped_truth(rows, 7, 4)
    assert {OCTOBER[0] + i * DAY: c.exact for i, c in svc.trees.closed("act", "mau", "2025-10").items()} == {
        d: truth[d] for d in OCTOBER[:21]
    }
    with pytest.raises(InvalidParameterValue, match="continual series of 7-day windows"):
        svc.release_rows("act", "mau", OCTOBER[0], OCTOBER[0], 3, "alice", now=NOW)


def test_a_tree_that_does_not_fit_the_cap_is_refused_before_counting(tmp_path: Path) -> None:
    svc = service(tmp_path, cap=0.5)
    svc.ingest("act", Batch.of_rows(workload(7, 50)), "admin")
    with pytest.raises(BudgetExhausted):
        svc.release_rows("act", "mau", OCTOBER[3], OCTOBER[3], None, "alice", now=NOW)
    assert svc.trees.closed("act", "mau", "2025-10") == {}
    assert not list((tmp_path / "ev" / "act").glob("tree/*.parquet"))


def test_an_erased_person_leaves_later_days_and_the_cap_state(tmp_path: Path) -> None:
    rows = [("stays", f"{d} 09:00:00", "+") for d in OCTOBER] + [
        ("leaves", f"{d} 09:00:00", "+") for d in OCTOBER
    ]
    svc = service(tmp_path, "dau")
    svc.ingest("act", Batch.of_rows(rows), "admin")
    svc.release_rows("act", "dau", OCTOBER[0], OCTOBER[9], None, "alice", now=NOW)
    svc.store.erase("act", "leaves", dt.datetime(2025, 12, 1), window_days=7)
    svc.release_rows("act", "dau", OCTOBER[10], OCTOBER[20], None, "alice", now=NOW)
    exact = {i: c.exact for i, c in svc.trees.closed("act", "dau", "2025-10").items()}
    assert [exact[i] for i in range(10)] == [2] * 10 and [exact[i] for i in range(10, 21)] == [1] * 11
    (pseudonym,) = [p for e, p in svc.store.keys.pseudonyms_of("act", "leaves") if e == "2025-10"]
    svc.flush_deletes("act")
    for state in (tmp_path / "ev" / "act" / "tree").glob("*.parquet"):
        names = {
            bytes(r[0]).hex() for r in duckdb.connect().execute(f"SELECT pseudonym FROM '{state}'").fetchall()
        }
        assert pseudonym not in names and len(names) == 1


def test_concurrent_askers_share_one_tree_and_one_charge(tmp_path: Path) -> None:
    svc = service(tmp_path)
    svc.ingest("act", Batch.of_rows(workload(9, 200)), "admin")
    results: list[list[tuple]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                svc.release_rows("act", "mau", OCTOBER[0], OCTOBER[14], None, "a", now=NOW)
            )
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len({tuple(r[2] for r in rows) for rows in results}) == 1
    assert sum(r[5] for rows in results for r in rows) == pytest.approx(
        svc.releases.spent("act", "mau", 202510)
    )
    assert svc.releases.spent("act", "mau", 202510) == pytest.approx(1.0, abs=0.01)
