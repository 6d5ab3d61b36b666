"""Dashboards that refresh for free: time-bucketed questions are released bucket by bucket.

A Grafana time-series panel re-sends its query with a window that moves with the clock. Each hourly
bucket is released once and stored; a refresh is answered from stored buckets plus one fresh
release of the buckets never released before. Real proxy, real psycopg, Grafana's macro expansions.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml

from tests.proxy_process import DEMO_POLICY, ProxyProcess, start_proxy

DAY = dt.datetime(2025, 6, 2)
EPSILON = 0.5
PANEL = (
    'SELECT floor(extract(epoch from ts)/3600)*3600 AS "time", COUNT(*) AS events, AVG(amount) AS amount '
    "FROM events WHERE ts BETWEEN '{low}' AND '{high}' GROUP BY 1 ORDER BY 1"
)


def write_events(path: Path, seed: int = 3) -> None:
    """Two days of events, one per person, at random moments (DuckDB's seeded random: demo data)."""
    with duckdb.connect() as con:
        con.execute(f"SELECT setseed({seed / 10})")
        con.execute(
            f"COPY (SELECT i AS user_id, TIMESTAMP '{DAY - dt.timedelta(days=1)}' + "
            "to_microseconds(CAST(random() * 172800e6 AS BIGINT)) AS ts, round(random() * 100, 2) AS amount, "
            "CASE WHEN random() < 0.6 THEN 'web' ELSE 'app' END AS channel "
            f"FROM range(40000) t(i)) TO '{path}' (FORMAT parquet)"
        )


@pytest.fixture
def dashboard(tmp_path: Path) -> ProxyProcess:
    data = tmp_path / "events.parquet"
    write_events(data)
    proxy = start_events_proxy(
        tmp_path, data, (DAY - dt.timedelta(days=1)).date(), (DAY + dt.timedelta(days=1)).date(),
        query={"default_epsilon": EPSILON}, suppression={"min_group_size": 20}, max_groups=200,
    )  # fmt: skip
    yield proxy
    proxy.stop()


def start_events_proxy(
    directory: Path, source: Path, earliest: dt.date, latest: dt.date, **spec: object
) -> ProxyProcess:
    """A proxy over an `events` dataset (one row per person, a timestamp `ts`, an `amount`), with
    dataset keys of `spec` added. A simulated day of refreshes runs in seconds: far above the
    per-user rate limit, which is not what this file tests."""
    dataset = {
        "source": str(source),
        "privacy_unit": "user_id",
        "one_row_per_unit": True,
        "budget": {"epsilon": 100.0},
        "columns": {
            "user_id": {"type": "bigint"},
            "ts": {"type": "timestamp", "earliest": str(earliest), "latest": str(latest)},
            "amount": {"type": "double", "lower": 0, "upper": 100},
            "channel": {"type": "text", "group_by_values": ["web", "app"]},
        },
        **spec,
    }
    policy = {"users": yaml.safe_load(DEMO_POLICY.read_text())["users"], "datasets": {"events": dataset}}
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return start_proxy(path, directory, args=["--max-queries-per-minute", "0"])


def debits(proxy: ProxyProcess) -> list[int]:
    with sqlite3.connect(proxy.ledger) as db:
        return [r[0] for r in db.execute("SELECT cost_micro FROM debits")]


def epoch(moment: dt.datetime) -> int:
    return int((moment - dt.datetime(1970, 1, 1)).total_seconds())


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_day_of_one_minute_refreshes_costs_one_release_per_new_bucket(dashboard: ProxyProcess) -> None:
    """A 6-hour window slid across a day at one-minute steps: 1,440 refreshes, at most 25 releases
    (the first window's 7 buckets at once, then one per hour), every bucket identical throughout."""
    steps = int(os.environ.get("PRIVACYLENS_DASHBOARD_STEPS", "1440"))
    seen: dict[float, tuple] = {}
    with psycopg.connect(dashboard.dsn(), autocommit=True) as conn:
        for minute in range(steps):
            now = DAY + dt.timedelta(minutes=minute)
            rows = conn.execute(PANEL.format(low=iso(now - dt.timedelta(hours=6)), high=iso(now))).fetchall()
            assert 6 <= len(rows) <= 7
            for row in rows:
                assert seen.setdefault(row[0], row[1:]) == row[1:], f"bucket {row[0]} changed"
    charged = debits(dashboard)
    new_hours = (steps - 1) // 60  # a new bucket enters the window every hour
    assert len(charged) == 1 + new_hours <= 25
    assert sum(charged) == len(charged) * EPSILON * 1_000_000  # ε × fresh releases, not ε × 1,440
    assert len(seen) == 7 + new_hours


def test_grafana_macro_expansions_over_the_wire(dashboard: ProxyProcess) -> None:
    low, high = DAY + dt.timedelta(hours=2), DAY + dt.timedelta(hours=8, minutes=30)
    time_filter = f"ts BETWEEN '{iso(low)}' AND '{iso(high)}'"
    queries = {
        "$__timeGroupAlias": f'SELECT floor(extract(epoch from ts)/3600)*3600 AS "time", COUNT(*) '
        f"FROM events WHERE {time_filter} GROUP BY 1 ORDER BY 1",
        "$__timeGroup": f"SELECT floor(extract(epoch from ts)/3600)*3600, COUNT(*) FROM events "
        f"WHERE {time_filter} GROUP BY 1 ORDER BY 1",
        "date_trunc": f"SELECT date_trunc('hour', ts) AS \"time\", COUNT(*) FROM events "
        f"WHERE ts >= '{low:%Y-%m-%d %H:%M:%S}' AND ts <= '{high:%Y-%m-%d %H:%M:%S}' GROUP BY 1 ORDER BY 1",
        "to_timestamp": f'SELECT floor(extract(epoch from ts)/3600)*3600 AS "time", COUNT(*) FROM events '
        f"WHERE ts >= to_timestamp({epoch(low)}) AND ts <= to_timestamp({epoch(high)}) GROUP BY 1 ORDER BY 1",
    }
    with psycopg.connect(dashboard.dsn(), autocommit=True) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        results = {}
        for name, sql in queries.items():
            cursor = conn.execute(sql)
            names = [c.name for c in cursor.description or []]
            assert names[1:] == ["count", "count_ci_low", "count_ci_high", "suppressed"], name
            results[name] = cursor.fetchall()
            assert len(results[name]) == 7, name  # 02:00 .. 08:00, the 08:00 bucket whole
        assert any("widened to whole buckets" in n for n in notices)
        epochs = [r[0] for r in results["$__timeGroupAlias"]]
        assert epochs == [
            (DAY + dt.timedelta(hours=h) - dt.datetime(1970, 1, 1)).total_seconds() for h in range(2, 9)
        ]
        assert results["$__timeGroup"] == results["$__timeGroupAlias"] == results["to_timestamp"]
        assert [r[0] for r in results["date_trunc"]] == [DAY + dt.timedelta(hours=h) for h in range(2, 9)]
    assert len(debits(dashboard)) == 2  # epoch buckets once, date_trunc buckets once


def test_relative_windows_and_a_data_change(dashboard: ProxyProcess, tmp_path: Path) -> None:
    """now()-relative filters run (here they match no declared time, so every bucket is empty); a
    data change makes stored buckets fresh again."""
    with psycopg.connect(dashboard.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT date_trunc('hour', ts) AS \"time\", COUNT(*) FROM events "
            "WHERE ts > now() - interval '6 hours' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert rows == []  # the declared range ended before now: no bucket to release
        sql = PANEL.format(low=iso(DAY), high=iso(DAY + dt.timedelta(hours=3)))
        first = conn.execute(sql).fetchall()
        assert conn.execute(sql).fetchall() == first and len(debits(dashboard)) == 1
        write_events(tmp_path / "events.parquet", seed=4)  # the data changed
        again = conn.execute(sql).fetchall()
        assert len(debits(dashboard)) == 2 and len(again) == len(first)


def test_new_rows_in_later_buckets_keep_earlier_releases(tmp_path: Path) -> None:
    """Daily files: a new day's file leaves the stored days valid (only the new day is released);
    rewriting an old day's file makes that day, and only it, fresh again."""
    folder = tmp_path / "events"
    folder.mkdir()

    def write_day(day: int, seed: int, rows: int = 3000) -> None:
        with duckdb.connect() as con:
            con.execute(f"SELECT setseed({seed / 100})")
            con.execute(
                f"COPY (SELECT {day} * 100000 + i AS user_id, TIMESTAMP '2025-06-0{day}' + "
                "to_microseconds(CAST(random() * 86399e6 AS BIGINT)) AS ts, "
                "round(random() * 100, 2) AS amount "
                f"FROM range({rows}) t(i)) TO '{folder}/day-{day}.parquet' (FORMAT parquet)"
            )

    for day in (1, 2, 3):
        write_day(day, day)
    proxy = start_events_proxy(tmp_path, folder / "*.parquet", dt.date(2025, 6, 1), dt.date(2025, 6, 9))
    sql = (
        "SELECT date_trunc('day', ts) AS day, COUNT(*), AVG(amount) FROM events "
        "WHERE ts >= '2025-06-01' AND ts < '2025-06-05' GROUP BY 1 ORDER BY 1"
    )
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            notices: list[str] = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            first = {r[0]: r for r in conn.execute(sql).fetchall()}
            assert len(debits(proxy)) == 1
            write_day(4, 4)  # the next day arrives
            second = {r[0]: r for r in conn.execute(sql).fetchall()}
            assert len(debits(proxy)) == 2
            assert "1 new time bucket(s) released, 4 re-served at no cost" in notices, notices
            assert all(second[day] == row for day, row in first.items() if day.day in (1, 2, 3))
            assert second[dt.datetime(2025, 6, 4)][1] > 2000  # the new day's rows are counted
            write_day(2, 20, rows=6000)  # an old day is rewritten (twice the rows: surely a new answer)
            third = {r[0]: r for r in conn.execute(sql).fetchall()}
            assert len(debits(proxy)) == 3
            changed = [day for day in third if third[day] != second[day]]
            assert changed == [dt.datetime(2025, 6, 2)], (notices[-3:], second, third)
            assert third[dt.datetime(2025, 6, 2)][1] > 5000
    finally:
        proxy.stop()


def test_buckets_past_the_watermark_are_pending_and_free(tmp_path: Path) -> None:
    """An append-only dataset complete one hour after each bucket ends: the last hours of a window
    ending now come back NULL with pending = true, cost nothing, and are released once complete."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    data = tmp_path / "events.parquet"
    with duckdb.connect() as con:
        con.execute("SELECT setseed(0.5)")
        con.execute(
            f"COPY (SELECT i AS user_id, TIMESTAMP '{now:%Y-%m-%d %H:%M:%S}' - "
            "to_microseconds(CAST(random() * 36000e6 AS BIGINT)) AS ts "
            f"FROM range(20000) t(i)) TO '{data}' (FORMAT parquet)"
        )
    proxy = start_events_proxy(
        tmp_path,
        data,
        (now - dt.timedelta(days=2)).date(),
        (now + dt.timedelta(days=1)).date(),
        append_only={"column": "ts", "complete_after": "1 hour"},
    )
    sql = (
        "SELECT date_trunc('hour', ts) AS \"time\", COUNT(*) FROM events "
        "WHERE ts > now() - interval '6 hours' AND ts <= now() GROUP BY 1 ORDER BY 1"
    )
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            cursor = conn.execute(sql)
            assert [c.name for c in cursor.description or []][-2:] == ["pending", "suppressed"]
            rows = cursor.fetchall()
            complete_until = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
            for bucket, count, low, high, pending, suppressed in rows:
                waiting = bucket + dt.timedelta(hours=1) > complete_until
                assert pending is waiting, (bucket, complete_until)
                if pending:
                    assert count is None and low is None and high is None and suppressed is False
                else:
                    assert count is not None and count > 1000
            assert sum(1 for r in rows if r[4]) in (1, 2) and sum(1 for r in rows if not r[4]) >= 5
            assert len(debits(proxy)) == 1
            again = {r[0]: r for r in conn.execute(sql).fetchall()}
            assert len(debits(proxy)) <= 2  # free, unless an hour closed in between (one new release)
            assert all(again[r[0]] == r for r in rows if not r[4] and r[0] in again)
    finally:
        proxy.stop()


def test_a_bucketed_question_with_client_parameters(dashboard: ProxyProcess) -> None:
    """Bound parameters and the proxy's own range parameters live side by side (the detectors see
    the released buckets' range)."""
    sql = (
        "SELECT date_trunc('hour', ts) AS \"time\", COUNT(*) FROM events "
        "WHERE channel = %s AND ts >= %s AND ts < %s GROUP BY 1 ORDER BY 1"
    )
    literal = (
        "SELECT date_trunc('hour', ts) AS \"time\", COUNT(*) FROM events "
        f"WHERE channel = 'web' AND ts >= '{DAY:%Y-%m-%d} 01:00:00' AND ts < '{DAY:%Y-%m-%d} 04:00:00' "
        "GROUP BY 1 ORDER BY 1"
    )
    with psycopg.connect(dashboard.dsn(), autocommit=True) as conn:
        first = conn.execute(literal).fetchall()
        assert len(first) == 4  # 01:00 .. 04:00 (the bound 04:00 opens a bucket of its own)
        bound = conn.execute(
            sql, ["web", DAY + dt.timedelta(hours=1), DAY + dt.timedelta(hours=3)]
        ).fetchall()
    assert len(bound) == 24 * 3  # a bound time range does not narrow the buckets: every declared hour
    assert {r[0]: r for r in bound}[DAY + dt.timedelta(hours=1)] is not None
    assert len(debits(dashboard)) == 2


def test_explain_says_how_a_bucketed_question_is_charged(dashboard: ProxyProcess) -> None:
    sql = PANEL.format(low=iso(DAY), high=iso(DAY + dt.timedelta(hours=2, minutes=30)))
    with psycopg.connect(dashboard.dsn(), autocommit=True) as conn:
        before = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql))
        conn.execute(sql).fetchall()
        after = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql))
    assert f"time buckets of ts from {DAY:%Y-%m-%d} 00:00:00 up to {DAY:%Y-%m-%d} 03:00:00" in before
    assert "already answered" not in before and "already answered" in after
    assert len(debits(dashboard)) == 1
