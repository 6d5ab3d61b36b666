"""Activity datasets through a real proxy and real clients: COPY (text and CSV) and INSERT as the
ingest role, DELETE as an erasure, DAU / MAU releases as analysts read them (re-served, never
re-noised), refusals with their SQLSTATEs, and kill -9 in the middle of a COPY.

Truth is known because the test writes the events; noise is Laplace with b = 1/0.3 on DAU (a
miss by more than 40 has probability below 1e-5) and Gaussian σ ≈ 8.1 on MAU (by more than 50: 1e-9).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.proxy_process import ProxyProcess, restart_proxy

ROOT = Path(__file__).resolve().parent.parent
LESS_NOISE = {"activity:dau.epsilon": 0.3}  # the demo's 0.1 fits every day of a month; tests want b = 3.3


@pytest.fixture(scope="module")
def activity_proxy(proxy_factory: Callable[..., ProxyProcess]) -> ProxyProcess:
    return proxy_factory(**LESS_NOISE)


def copy_rows(proxy: ProxyProcess, rows: list[tuple[str, str, str]], sql: str | None = None) -> None:
    with (
        psycopg.connect(proxy.dsn("ingest"), autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy(sql or "COPY activity (user_id, ts, op) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def dau(proxy: ProxyProcess, day: str) -> tuple:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        return conn.execute(f"SELECT * FROM privacylens.dau('activity', DATE '{day}')").fetchone()


def test_copy_then_dau_is_released_once_and_re_served(activity_proxy: ProxyProcess) -> None:
    copy_rows(activity_proxy, [(f"u{i}", f"2025-10-01 {i % 24:02d}:00:00+00", "+") for i in range(300)])
    day, value, low, high, epsilon, delta, reserved, status = dau(activity_proxy, "2025-10-01")
    assert abs(value - 300) < 40 and low <= value <= high and (epsilon, delta, reserved) == (0.3, 0.0, False)
    assert status == "released"
    again = dau(activity_proxy, "2025-10-01")
    assert (
        again[1:4] == (value, low, high) and again[4] == 0.0 and again[6] is True and again[7] == "re-served"
    )


def test_csv_copy_with_header_and_insert_store_events(activity_proxy: ProxyProcess) -> None:
    with psycopg.connect(activity_proxy.dsn("ingest"), autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy("COPY activity (ts, user_id) FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
            copy.write(b"ts,user_id\n")
            copy.write("".join(f'2025-10-02 08:00:00+00,"c,{i}"\n' for i in range(150)).encode())
        cur.execute(
            "INSERT INTO activity (user_id, ts, op) VALUES (%s, %s, '+'), ('i2', '2025-10-02 09:00+00', '+')",
            ("i1", "2025-10-02 09:00+00"),
        )
        assert cur.rowcount == 2
    assert abs(dau(activity_proxy, "2025-10-02")[1] - 152) < 40


def test_a_bad_row_refuses_the_whole_copy_with_its_line(activity_proxy: ProxyProcess) -> None:
    rows = [("b1", "2025-10-03 08:00:00+00", "+"), ("b2", "2025-10-03 09:00:00+00", "+"), ("b3", "soon", "+")]
    rows += [(f"b{i}", "2025-10-03 10:00:00+00", "+") for i in range(4, 200)]
    with pytest.raises(psycopg.errors.BadCopyFileFormat) as caught:
        copy_rows(activity_proxy, rows)
    assert "line 3" in caught.value.diag.message_primary and "nothing" in caught.value.diag.message_primary
    assert abs(dau(activity_proxy, "2025-10-03")[1]) < 40  # none of the 199 good rows was kept


def test_delete_erases_a_person_from_later_releases_only(activity_proxy: ProxyProcess) -> None:
    people = [f"e{i}" for i in range(200)]
    copy_rows(activity_proxy, [(p, "2025-10-04 12:00:00+00", "+") for p in people])
    copy_rows(activity_proxy, [(p, "2025-10-05 12:00:00+00", "+") for p in people])
    before = dau(activity_proxy, "2025-10-04")
    assert abs(before[1] - 200) < 40
    with psycopg.connect(activity_proxy.dsn("ingest"), autocommit=True) as conn:
        for person in people[:100]:
            assert conn.execute("DELETE FROM activity WHERE user_id = %s", (person,)).rowcount == 1
    assert dau(activity_proxy, "2025-10-04")[1:4] == before[1:4]  # released before: unchanged
    assert abs(dau(activity_proxy, "2025-10-05")[1] - 100) < 40  # released after: without them
    copy_rows(activity_proxy, [(people[0], "2025-10-05 13:00:00+00", "-")])  # an op '-' row is the same
    with psycopg.connect(activity_proxy.dsn("auditor"), autocommit=True) as conn:
        audited = conn.execute(
            "SELECT user_name, detail FROM privacylens.audit WHERE kind = 'activity ingested' "
            "ORDER BY id DESC"
        ).fetchall()
    assert audited[0][0] == "ingest" and '"erasures": 1' in audited[0][1]  # who wrote what, no ids
    assert all("e1" not in detail for _, detail in audited)


def test_mau_with_parameters_and_post_processing(activity_proxy: ProxyProcess) -> None:
    copy_rows(activity_proxy, [(f"m{i}", f"2025-10-{1 + i % 20:02d} 12:00:00+00", "+") for i in range(400)])
    with psycopg.connect(activity_proxy.dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT day, mau, mau_ci_high - mau_ci_low AS width, status FROM privacylens.mau(%s, %s, 30)",
            ("activity", "2025-10-25"),
        ).fetchone()
        assert str(row[0]) == "2025-10-25" and row[3] == "released" and 20 < row[2] < 60
        series = conn.execute(
            "SELECT day, dau FROM privacylens.dau('activity', DATE '2025-10-10', DATE '2025-10-12') "
            "ORDER BY day DESC"
        ).fetchall()
        assert [str(d) for d, _ in series] == ["2025-10-12", "2025-10-11", "2025-10-10"]
        today = conn.execute("SELECT * FROM privacylens.dau('activity', DATE '2099-01-01')").fetchone()
        assert today[1] is None and today[4] == 0.0 and today[7] == "pending"  # not complete yet: free


def test_the_bi_shape_is_the_dau_series(activity_proxy: ProxyProcess) -> None:
    copy_rows(activity_proxy, [(f"bi{i}", f"2025-07-{20 + i % 3:02d} 12:00:00+00", "+") for i in range(300)])
    with psycopg.connect(activity_proxy.dsn(), autocommit=True) as conn:
        cursor = conn.execute(
            "SELECT date_trunc('day', ts) AS day, COUNT(DISTINCT user_id) AS users FROM activity "
            "WHERE ts >= '2025-07-20' AND ts < '2025-07-23' GROUP BY 1 ORDER BY 1"
        )
        rows = cursor.fetchall()
        assert [c.name for c in cursor.description] == ["day", "users", "users_ci_low", "users_ci_high"]
        assert [str(r[0]) for r in rows] == [
            "2025-07-20 00:00:00",
            "2025-07-21 00:00:00",
            "2025-07-22 00:00:00",
        ]
        assert all(abs(r[1] - 100) < 40 and r[2] <= r[1] <= r[3] for r in rows)
        series = conn.execute(
            "SELECT day, dau FROM privacylens.dau('activity', DATE '2025-07-20', DATE '2025-07-22') "
            "ORDER BY day"
        ).fetchall()
        assert [r[1] for r in rows] == [v for _, v in series]  # the same releases, re-served
        casted = conn.execute(
            "SELECT CAST(ts AS date), count(DISTINCT user_id) FROM activity "
            "WHERE ts BETWEEN '2025-07-20' AND '2025-07-22 23:59:59' GROUP BY CAST(ts AS date)"
        ).fetchall()
        assert sorted(r[1] for r in casted) == sorted(r[1] for r in rows)
        # bound parameters, as JDBC / Metabase send them: text timestamps with a zone, and datetimes
        bound = conn.execute(
            "SELECT date_trunc('day', ts) AS day, COUNT(DISTINCT user_id) AS users FROM activity "
            "WHERE ts >= %s AND ts < %s GROUP BY 1 ORDER BY 1",
            ("2025-07-20 00:00:00+00", dt.datetime(2025, 7, 23, tzinfo=dt.UTC)),
            prepare=True,
        ).fetchall()
        assert [(r[0], r[1]) for r in bound] == [(r[0], r[1]) for r in rows]
        shifted = conn.execute(  # 02:00 in UTC+2 is midnight UTC: the same days
            "SELECT date_trunc('day', ts), COUNT(DISTINCT user_id) FROM activity "
            "WHERE ts >= %s AND ts < %s GROUP BY 1",
            ("2025-07-20 02:00:00+02", "2025-07-23 02:00:00+02"),
        ).fetchall()
        assert len(shifted) == 3


def test_concurrent_askers_of_a_fresh_day_share_one_release_and_one_charge(
    activity_proxy: ProxyProcess,
) -> None:
    import sqlite3
    import threading

    copy_rows(activity_proxy, [(f"r{i}", "2025-06-15 12:00:00+00", "+") for i in range(100)])
    answers: list[tuple] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        answers.append(dau(activity_proxy, "2025-06-15"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == 8 and len({a[1:4] for a in answers}) == 1  # one value for everyone
    assert sum(1 for a in answers if not a[6]) == 1  # one of them was the fresh release
    with sqlite3.connect(activity_proxy.ledger) as db:
        (debits,) = db.execute(
            "SELECT COUNT(*) FROM debits WHERE fingerprint = 'activity:dau:2025-06-15:1'"
        ).fetchone()
    assert debits == 1


def test_refusals(activity_proxy: ProxyProcess) -> None:
    with (
        psycopg.connect(activity_proxy.dsn(), autocommit=True) as conn,
        conn.cursor() as cur,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        cur.copy("COPY activity FROM STDIN") as copy,
    ):
        copy.write_row(("x", "2025-10-01", "+"))
    with psycopg.connect(activity_proxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("COPY employees FROM STDIN")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("COPY activity TO STDOUT")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(
                "SELECT * FROM privacylens.dau('activity', DATE '2025-10-01') JOIN employees ON true"
            )
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(
                "SELECT read_text('/etc/passwd') FROM privacylens.dau('activity', DATE '2025-10-01')"
            )
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT * FROM privacylens.mau('activity', DATE '2025-10-31', 90)")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("DELETE FROM employees WHERE user_id = 1")
        with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:  # no range: pointed on
            conn.execute(
                "SELECT date_trunc('day', ts), COUNT(DISTINCT user_id) FROM activity GROUP BY 1 ORDER BY 1"
            )
        assert "privacylens.dau('activity'" in caught.value.diag.message_hint
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("SELECT user_id, COUNT(*) FROM activity GROUP BY 1")
    with psycopg.connect(activity_proxy.dsn("ingest"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM privacylens.dau('activity', DATE '2025-10-01')")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("DELETE FROM activity WHERE ts < '2025-10-01'")


def test_the_monthly_cap_refuses_with_53400(activity_proxy: ProxyProcess) -> None:
    with psycopg.connect(activity_proxy.dsn(), autocommit=True) as conn:
        conn.execute("SELECT * FROM privacylens.dau('activity', DATE '2025-09-01', DATE '2025-09-10')")
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded) as caught:
            conn.execute("SELECT * FROM privacylens.dau('activity', DATE '2025-09-11')")
        assert "2025-09" in caught.value.diag.message_primary and caught.value.diag.message_hint
        assert (
            len(
                conn.execute(
                    "SELECT * FROM privacylens.dau('activity', DATE '2025-09-01', DATE '2025-09-10')"
                ).fetchall()
            )
            == 10
        )


def test_kill_9_during_copy_keeps_acknowledged_copies_and_nothing_of_the_cut_one(
    proxy_factory: Callable[..., ProxyProcess],
) -> None:
    proxy = proxy_factory(**LESS_NOISE)
    copy_rows(proxy, [(f"k{i}", "2025-08-10 12:00:00+00", "+") for i in range(300)])  # acknowledged
    conn = psycopg.connect(proxy.dsn("ingest"), autocommit=True)
    with (
        pytest.raises(psycopg.OperationalError),
        conn.cursor() as cur,
        cur.copy("COPY activity (user_id, ts, op) FROM STDIN") as copy,
    ):
        for i in range(50_000):
            copy.write_row((f"cut{i}", "2025-08-11 12:00:00+00", "+"))
            if i == 20_000:
                proxy.process.send_signal(signal.SIGKILL)
                proxy.process.wait()
    conn.close()
    restarted = restart_proxy(proxy)
    try:
        assert abs(dau(restarted, "2025-08-10")[1] - 300) < 40
        assert abs(dau(restarted, "2025-08-11")[1]) < 40
    finally:
        restarted.stop()


def privacylens(proxy: ProxyProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on the running proxy's policy, ledger and event folder."""
    where = [
        "--policy",
        str(proxy.policy),
        "--ledger",
        str(proxy.ledger),
        "--activity-store",
        str(proxy.activity),
    ]
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args, *where],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


def test_rotate_salt_beside_a_running_proxy_is_audited_and_refuses_the_past(
    activity_proxy: ProxyProcess,
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    effective = today + dt.timedelta(days=2)
    done = privacylens(activity_proxy, "rotate-salt", "--dataset", "activity", "--effective", str(effective))
    assert done.returncode == 0, done.stderr
    assert f"from {effective} on get a new pseudonym key" in done.stdout
    assert "keep being counted" in done.stdout  # events up to now are stored: the overlap is reported
    again = privacylens(activity_proxy, "rotate-salt", "--dataset", "activity", "--effective", str(effective))
    assert again.returncode == 1 and "exists already" in again.stderr
    past = privacylens(activity_proxy, "rotate-salt", "--dataset", "activity", "--effective", str(today))
    assert past.returncode == 1 and "HINT: Events up to now" in past.stderr
    copy_rows(activity_proxy, [("rotated", f"{today} 00:00:01+00", "+")])  # the server reads the new calendar
    with psycopg.connect(activity_proxy.dsn("auditor"), autocommit=True) as conn:
        kinds = conn.execute(
            "SELECT user_name, detail FROM privacylens.audit WHERE kind = 'pseudonym key rotated'"
        ).fetchall()
    assert len(kinds) == 1 and kinds[0][0].startswith("cli:") and str(effective) in kinds[0][1]


def test_estimate_cli_counts_exactly_or_by_sketch_and_says_it_is_not_a_release(
    activity_proxy: ProxyProcess,
) -> None:
    copy_rows(activity_proxy, [(f"est{i}", "2025-05-20 10:00:00+00", "+") for i in range(250)])
    for backend in ("exact", "kmv", "theta"):
        done = privacylens(
            activity_proxy, "estimate", "--dataset", "activity", "--day", "2025-05-20", "--backend", backend
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(
            f"{backend}: 250 people active 2025-05-20..2025-05-20"
        )  # below k: exact
        assert "not differentially private" in done.stdout


def test_the_budget_view_shows_each_metric_and_their_composed_monthly_loss(
    activity_proxy: ProxyProcess,
) -> None:
    copy_rows(activity_proxy, [(f"b{i}", "2025-03-10 10:00:00+00", "+") for i in range(50)])
    with psycopg.connect(activity_proxy.dsn(), autocommit=True) as conn:
        conn.execute("SELECT * FROM privacylens.dau('activity', DATE '2025-03-10', DATE '2025-03-12')")
        conn.execute("SELECT * FROM privacylens.mau('activity', DATE '2025-03-15', 30)")
        rows = {
            user: (total, spent)
            for user, total, spent in conn.execute(
                "SELECT user_name, total, spent FROM privacylens.budget WHERE dataset = 'activity' "
                "AND period_start = TIMESTAMP '2025-03-01'"
            ).fetchall()
        }
    dau, mau, combined = rows["metric:dau"], rows["metric:mau"], rows["metric:combined"]
    assert dau[1] == pytest.approx(0.9) and mau[1] == pytest.approx(0.5, abs=0.05)
    assert combined[0] == pytest.approx(dau[0] + mau[0])
    assert max(dau[1], mau[1]) < combined[1] <= dau[1] + mau[1] + 1e-6  # composed, not less than either


def test_the_bi_distinct_count_over_a_range_is_that_window_s_mau(activity_proxy: ProxyProcess) -> None:
    copy_rows(activity_proxy, [(f"w{i}", f"2025-02-{1 + i % 5:02d} 12:00:00+00", "+") for i in range(400)])
    copy_rows(activity_proxy, [(f"w{i}", "2025-02-06 12:00:00+00", "+") for i in range(50)])  # outside
    with psycopg.connect(activity_proxy.dsn(), autocommit=True) as conn:
        cursor = conn.execute(
            "SELECT COUNT(DISTINCT user_id) AS active FROM activity "
            "WHERE ts >= '2025-02-01' AND ts < '2025-02-06'"
        )
        (row,) = cursor.fetchall()
        assert [c.name for c in cursor.description] == ["active", "active_ci_low", "active_ci_high"]
        assert abs(row[0] - 400) < 50 and row[1] <= row[0] <= row[2]
        (same,) = conn.execute("SELECT mau FROM privacylens.mau('activity', DATE '2025-02-05', 5)").fetchone()
        assert same == row[0]  # one release, re-served
        bound = conn.execute(
            "SELECT COUNT(DISTINCT user_id) FROM activity WHERE ts >= %s AND ts < %s",
            ("2025-02-01", "2025-02-06"),
        )
        assert bound.fetchone()[0] == row[0]
        with pytest.raises(psycopg.errors.FeatureNotSupported) as wide:
            conn.execute(
                "SELECT COUNT(DISTINCT user_id) FROM activity WHERE ts >= '2025-01-01' AND ts < '2025-03-01'"
            )
        assert (
            "59 days" in wide.value.diag.message_primary and "privacylens.mau" in wide.value.diag.message_hint
        )


def test_analysts_see_the_activity_dataset_in_the_datasets_view(activity_proxy: ProxyProcess) -> None:
    with psycopg.connect(activity_proxy.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT dataset, privacy_unit, epsilon_per_user, delta_per_user, mechanism, default_epsilon, "
            "max_epsilon, columns FROM privacylens.datasets ORDER BY dataset"
        ).fetchall()
    by_name = {r[0]: r for r in rows}
    assert {"employees", "visits", "activity"} <= set(by_name)
    _, unit, per_user, delta, mechanism, dau, mau, columns = by_name["activity"]
    assert unit.startswith("person") and per_user == pytest.approx(3.1 + 3.5) and delta == 1e-6
    assert mechanism == "activity: dau discrete_laplace, mau discrete_gaussian (by platform)"
    assert (dau, mau, columns) == (0.3, 0.5, 4)
