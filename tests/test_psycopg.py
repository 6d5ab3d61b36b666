"""psycopg 3 against the real proxy: simple and extended protocol, refusals, budget."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg import errors, sql

from tests.proxy_process import ProxyProcess

GROUPED = "SELECT department, COUNT(*) AS n, AVG(salary) AS avg_salary FROM employees GROUP BY department"


def connect(proxy: ProxyProcess, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(proxy.dsn(), autocommit=True, connect_timeout=10, **kwargs)


def true_rows(sql: str, parquet: Path) -> list[tuple]:
    """The exact answer, computed by DuckDB directly on the demo file (for comparing with releases)."""
    with duckdb.connect() as con:
        return con.execute(sql, [str(parquet)]).fetchall()


def true_value(sql: str, parquet: Path) -> Any:
    return true_rows(sql, parquet)[0][0]


def spent_micro(proxy: ProxyProcess) -> int:
    with sqlite3.connect(proxy.ledger) as db:
        row = db.execute("SELECT COALESCE(SUM(spent_micro), 0) FROM accounts").fetchone()
    return int(row[0])


def test_simple_query_returns_released_columns(proxy: ProxyProcess) -> None:
    notices: list[str] = []
    with connect(proxy) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        cur = conn.execute(GROUPED)
        names = [c.name for c in cur.description or []]
        assert names == [
            "department",
            "n",
            "n_ci_low",
            "n_ci_high",
            "avg_salary",
            "avg_salary_ci_low",
            "avg_salary_ci_high",
            "suppressed",
        ]
        rows = cur.fetchall()
        assert len(rows) == 10
        for row in rows:
            if not row[7]:
                assert row[2] <= row[1] <= row[3]
                assert 20000 <= row[5] <= row[4] <= row[6] <= 250000
    assert notices and notices[0].startswith("ε spent 0.50 of")


def test_parameterized_query_uses_bound_values(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        recent = conn.execute(
            "SELECT COUNT(*) AS n FROM employees WHERE hire_date >= %s AND salary > %s",
            (dt.date(2030, 1, 1), 50000),
        ).fetchone()
        everyone = conn.execute(
            "SELECT COUNT(*) AS n FROM employees WHERE department = %s", ("Sales",)
        ).fetchone()
    assert recent is not None and everyone is not None
    assert recent[0] is None or recent[0] < 60  # nobody was hired after 2030: small or suppressed
    assert abs(everyone[0] - 3100) < 100


def test_prepared_statement_runs_repeatedly(proxy: ProxyProcess) -> None:
    with connect(proxy, prepare_threshold=0) as conn:
        for department in ("Sales", "Legal", "Sales"):
            (n, low, high, suppressed) = conn.execute(
                "SELECT COUNT(*), COUNT(*) FROM employees WHERE department = %s", (department,)
            ).fetchone()[:4]
            assert low <= n <= high and suppressed is not None


@pytest.mark.parametrize(
    ("query", "sqlstate"),
    [
        ("SELECT * FROM employees", "0A000"),
        ("SELECT salary FROM employees", "42501"),
        ("SELECT COUNT(*) FROM (SELECT * FROM employees) t", "0A000"),
        ("SELECT COUNT(*) FROM employees; SELECT * FROM employees", "0A000"),
        ("SELECT COUNT(*) FROM read_csv('/etc/passwd')", "0A000"),
        ("SELECT * FROM read_parquet('data/employees.parquet')", "0A000"),
        ("COPY employees TO '/tmp/out.csv'", "0A000"),
        ("SELECT COUNT(bogus) FROM employees", "42501"),
        ("SELECT bogus FROM employees", "42501"),
        ("SELECT COUNT(*) FROM pg_shadow", "42501"),
        ("SELECT AVG(user_id) FROM employees", "42501"),
        ("SELECT COUNT(*) FROM employees GROUP BY hire_date", "42501"),
        ("SELECT COUNT(*) FROM employees e JOIN employees f ON e.user_id = f.user_id", "0A000"),
        ("INSTALL httpfs", "0A000"),
        ("ATTACH 'x.db' AS x", "0A000"),
        ("PRAGMA database_list", "0A000"),
        ("SET enable_external_access = true", "0A000"),
        ("DROP TABLE employees", "0A000"),
        ("SELEC 1", "42601"),
    ],
)
def test_refusal_has_sqlstate_and_connection_stays_usable(
    proxy: ProxyProcess, query: str, sqlstate: str
) -> None:
    before = spent_micro(proxy)
    with connect(proxy) as conn:
        with pytest.raises(psycopg.Error) as raised:
            conn.execute(sql.SQL(query))  # type: ignore[arg-type]
        assert raised.value.sqlstate == sqlstate, raised.value
        assert raised.value.diag.message_primary
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert spent_micro(proxy) == before, "a refused statement must not cost budget"


def test_multi_statement_refusal_runs_nothing(proxy: ProxyProcess) -> None:
    before = spent_micro(proxy)
    with connect(proxy) as conn, pytest.raises(errors.FeatureNotSupported):
        conn.execute("SELECT COUNT(*) FROM employees; SELECT * FROM employees")
    assert spent_micro(proxy) == before


def test_transaction_status_and_failed_transaction(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), connect_timeout=10) as conn:  # not autocommit: psycopg sends BEGIN
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT salary FROM employees")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_describe_reports_the_schema_and_costs_nothing(proxy: ProxyProcess) -> None:
    before = spent_micro(proxy)
    with connect(proxy) as conn:
        pgconn = conn.pgconn
        prepared = pgconn.prepare(
            b"q", b"SELECT department, SUM(salary) FROM employees WHERE age > $1 GROUP BY department"
        )
        assert prepared.status == psycopg.pq.ExecStatus.COMMAND_OK
        described = pgconn.describe_prepared(b"q")
        assert described.status == psycopg.pq.ExecStatus.COMMAND_OK
        assert [described.fname(i) for i in range(described.nfields)] == [
            b"department",
            b"sum",
            b"sum_ci_low",
            b"sum_ci_high",
            b"suppressed",
        ]
        assert [described.ftype(i) for i in range(described.nfields)] == [25, 701, 701, 701, 16]
        assert described.nparams == 1 and described.param_type(0) == 23  # age is an integer
    assert spent_micro(proxy) == before


def test_settings_choose_epsilon_and_confidence(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("SET dp.epsilon = 0.2")
        conn.execute("SET dp.confidence = 0.9")
        assert conn.execute("SHOW dp.epsilon").fetchone() == ("0.2",)
        conn.execute("SELECT COUNT(*) FROM employees")
        assert notices[-1].startswith("ε spent 0.20 of") and "90% intervals" in notices[-1]
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SET dp.epsilon = 50")
            conn.execute("SELECT COUNT(*) FROM employees")


def test_budget_exhaustion_is_53400_with_amounts(proxy_factory: Callable[..., ProxyProcess]) -> None:
    small = proxy_factory(**{"budget.epsilon": 1.2})
    with connect(small) as conn:
        conn.execute("SELECT COUNT(*) FROM employees WHERE age > 20")
        conn.execute("SELECT COUNT(*) FROM employees WHERE age > 21")
        with pytest.raises(psycopg.Error) as raised:
            conn.execute("SELECT COUNT(*) FROM employees WHERE age > 22")
        assert raised.value.sqlstate == "53400"
        message = raised.value.diag.message_primary or ""
        assert "needs ε 0.5" in message and "only ε 0.2 of 1.2 is left" in message
        assert raised.value.diag.message_hint
        conn.execute("SET dp.epsilon = 0.2")
        assert conn.execute("SELECT COUNT(*) FROM employees WHERE age > 22").fetchone() is not None
        assert conn.execute("SELECT 1").fetchone() == (1,)  # free statements still work
        conn.execute("SET dp.epsilon = 0.5")  # an answered question is re-served even with no budget left
        assert conn.execute("select count(*)  FROM Employees where AGE > 21").fetchone() is not None


def test_concurrent_clients_never_overspend(proxy_factory: Callable[..., ProxyProcess]) -> None:
    tight = proxy_factory(**{"budget.epsilon": 2.5})  # affords exactly 5 answers at ε = 0.5
    barrier = threading.Barrier(16)
    outcomes: list[str] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        with connect(tight) as conn:
            barrier.wait(timeout=30)
            try:  # sixteen different questions: each would need its own ε
                conn.execute(f"SELECT COUNT(*) FROM employees WHERE age > {number}").fetchall()
                outcome = "answered"
            except psycopg.Error as error:
                outcome = error.sqlstate or "?"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(set(outcomes)) == ["53400", "answered"]
    assert outcomes.count("answered") == 5 and outcomes.count("53400") == 11
    assert spent_micro(tight) == 2_500_000


def test_auditor_cannot_read_data(proxy: ProxyProcess) -> None:
    with (
        psycopg.connect(proxy.dsn(user="auditor"), autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT COUNT(*) FROM employees")


@pytest.mark.parametrize(
    "where",
    [
        "department = 1",
        "hire_date >= 'not a date'",
        "age IN ('x', 30)",
        "salary > 1e308",
        "age < 99999999999999999999",
    ],
)
def test_filters_with_mismatched_values_answer_instead_of_failing(proxy: ProxyProcess, where: str) -> None:
    """Such a filter must not fail on some data and succeed on other data: it answers."""
    with connect(proxy) as conn:
        row = conn.execute(f"SELECT COUNT(*) FROM employees WHERE {where}").fetchone()  # type: ignore[arg-type]
    assert row is not None and len(row) == 4


def test_multi_statement_string_is_checked_with_its_own_settings(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        conn.execute("SET dp.epsilon = 50")  # outside the policy's limits: queries would be refused
        cur = conn.execute("SET dp.epsilon = 0.3; SELECT COUNT(*) FROM employees")
        assert cur.nextset() and cur.fetchone() is not None
        with pytest.raises(errors.InvalidParameterValue):
            conn.execute("SET dp.epsilon = 60; SELECT COUNT(*) FROM employees")
        assert conn.execute("SHOW dp.epsilon").fetchone() == ("0.3",)  # nothing of the refused string ran


def test_server_side_cursor_is_charged_once(proxy: ProxyProcess) -> None:
    before = spent_micro(proxy)
    with psycopg.connect(proxy.dsn()) as conn, conn.cursor(name="by_department") as cur:
        cur.execute("SELECT department, COUNT(*) FROM employees WHERE age > %s GROUP BY department", (30,))
        first = cur.fetchmany(3)
        rest = cur.fetchall()
        assert len(first) == 3 and len(rest) == 7
        assert [d.name for d in cur.description or []] == [
            "department",
            "count",
            "count_ci_low",
            "count_ci_high",
            "suppressed",
        ]
    assert spent_micro(proxy) - before == 500_000


def test_sql_cursor_statements(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        conn.execute("BEGIN")
        conn.execute(
            "DECLARE c NO SCROLL CURSOR FOR SELECT department, COUNT(*) FROM employees GROUP BY department"
        )
        assert len(conn.execute("FETCH FORWARD 4 FROM c").fetchall()) == 4
        assert conn.execute("MOVE 5 IN c").statusmessage == "MOVE 5"
        assert len(conn.execute("FETCH ALL FROM c").fetchall()) == 1
        conn.execute("CLOSE c")
        with pytest.raises(errors.InvalidCursorName):
            conn.execute("FETCH c")
        conn.execute("ROLLBACK")
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("DECLARE s SCROLL CURSOR FOR SELECT 1")


def test_binary_results_pipeline_and_prepare(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        n, low, high, avg, avg_low, avg_high, suppressed = (
            conn.cursor(binary=True).execute("SELECT COUNT(*), AVG(salary) FROM employees").fetchone()
        )
        assert low <= n <= high and avg_low <= avg <= avg_high and suppressed is False
        with conn.pipeline():
            one = conn.execute("SELECT 1")
            sales = conn.execute("SELECT COUNT(*) FROM employees WHERE department = %s", ("Sales",))
        assert one.fetchone() == (1,) and sales.fetchone()[3] is False
        for _ in range(3):
            assert conn.execute("SELECT %s::int AS x", (7,), prepare=True).fetchone() == (7,)


def test_pipeline_error_skips_to_sync_and_recovers(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        with pytest.raises(errors.FeatureNotSupported), conn.pipeline():
            conn.execute("SELECT 1")
            conn.execute("SELECT * FROM employees")
            conn.execute("SELECT 2")
        assert conn.execute("SELECT 3").fetchone() == (3,)


@pytest.mark.parametrize(
    "probe",
    [
        "SELECT * FROM employees WHERE 1 <> 1",
        "SELECT * FROM public.employees LIMIT 0",
        'SELECT e.* FROM "public"."employees" e WHERE 1 = 0',
        "SELECT * FROM employees WHERE false LIMIT 0",
    ],
)
def test_schema_probes_answer_columns_without_rows_or_cost(proxy: ProxyProcess, probe: str) -> None:
    before = spent_micro(proxy)
    with connect(proxy) as conn:
        cur = conn.execute(probe)  # type: ignore[arg-type]
        assert [d.name for d in cur.description or []] == [
            "user_id",
            "department",
            "salary",
            "age",
            "hire_date",
        ]
        assert cur.fetchall() == []
        named = conn.execute("SELECT salary AS s, department FROM employees WHERE 1 = 2")
        assert [(d.name, d.type_code) for d in named.description or []] == [("s", 701), ("department", 25)]
    assert spent_micro(proxy) == before


def test_a_real_filter_is_not_a_probe(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn, pytest.raises(errors.FeatureNotSupported):
        conn.execute("SELECT * FROM employees WHERE salary < 0 LIMIT 5")


def test_wrong_password_and_parameter_status_updates(proxy: ProxyProcess) -> None:
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(proxy.dsn(password="nope"), connect_timeout=10)
    assert "password authentication failed" in str(raised.value)
    with connect(proxy) as conn:
        assert conn.info.parameter_status("server_version") == "15.0"
        assert conn.info.parameter_status("integer_datetimes") == "on"
        conn.execute("SET application_name = 'dashboards'")
        conn.execute("SET TimeZone = 'Europe/Paris'")
        assert conn.info.parameter_status("application_name") == "dashboards"
        assert conn.info.parameter_status("TimeZone") == "Europe/Paris"


def test_having_filters_released_values(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        conn.execute("SET dp.epsilon = 2")
        rows = conn.execute(
            "SELECT department, COUNT(*) AS n FROM employees GROUP BY department "
            "HAVING n > 650 AND COUNT(*) < 4000 ORDER BY n"  # true counts: HR 500, Finance 800, Eng. 4200
        ).fetchall()
        assert [r[0] for r in rows] == ["Finance", "Marketing", "Support", "Operations", "Sales"]
        assert all(650 < r[1] < 4000 for r in rows)
        everything = conn.execute(
            "SELECT department, COUNT(*) AS n FROM employees GROUP BY department"
        ).fetchall()
        assert {r[0]: r for r in everything}["Sales"] == {r[0]: r for r in rows}[
            "Sales"
        ]  # same cached answer
        assert (
            conn.execute(  # a suppressed group (NULL) never passes HAVING
                "SELECT department, COUNT(*) FROM employees GROUP BY department HAVING COUNT(*) < 50"
            ).fetchall()
            == []
        )
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("SELECT department FROM employees GROUP BY department HAVING AVG(salary) > 1")


def test_variance_and_stddev_over_the_wire(proxy: ProxyProcess, data_file) -> None:  # type: ignore[no-untyped-def]
    truth = true_value(
        "SELECT stddev_samp(salary) FROM read_parquet(?) WHERE department = 'Engineering'", data_file
    )
    with connect(proxy) as conn:
        conn.execute("SET dp.epsilon = 2")
        cur = conn.execute(
            "SELECT STDDEV(salary), VARIANCE(age) FROM employees WHERE department = 'Engineering'"
        )
        assert [d.name for d in cur.description or []][:3] == ["stddev", "stddev_ci_low", "stddev_ci_high"]
        sd, low, high, var, var_low, var_high, suppressed = cur.fetchone()
        assert low <= sd <= high and var_low <= var <= var_high and not suppressed
        assert abs(sd - truth) < 0.1 * truth  # salaries above 250000 are clipped; noise at ε = 2 is small


def test_histograms_and_filter_narrowed_groups(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        conn.execute("SET dp.epsilon = 2")
        bands = conn.execute(
            "SELECT width_bucket(salary, 20000, 250000, 5) AS band, COUNT(*) FROM employees "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert [b[0] for b in bands] == [0, 1, 2, 3, 4, 5, 6]
        assert sum(b[1] or 0 for b in bands) == pytest.approx(14753, abs=300)
        narrowed = conn.execute(
            "SELECT department, COUNT(*) FROM employees WHERE department IN ('Sales', 'Legal') GROUP BY 1"
        ).fetchall()
        assert sorted(r[0] for r in narrowed) == ["Legal", "Sales"]  # only the groups the query asks about


def test_median_and_percentiles(proxy: ProxyProcess, data_file) -> None:  # type: ignore[no-untyped-def]
    truth = true_value("SELECT median(salary) FROM read_parquet(?) WHERE department = 'Sales'", data_file)
    with connect(proxy) as conn:
        conn.execute("SET dp.epsilon = 1")
        cur = conn.execute(
            "SELECT MEDIAN(salary), PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY age) AS p90 FROM employees "
            "WHERE department = 'Sales'"
        )
        assert [d.name for d in cur.description or []][:4] == [
            "median",
            "median_ci_low",
            "median_ci_high",
            "p90",
        ]
        median, low, high, p90, p90_low, p90_high, suppressed = cur.fetchone()
        assert low <= median <= high and p90_low <= p90 <= p90_high and not suppressed
        assert abs(median - truth) < 0.05 * truth
        conn.execute("SET dp.mechanism = gaussian")
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("SELECT MEDIAN(salary) FROM employees")


def test_case_buckets(proxy: ProxyProcess) -> None:
    with connect(proxy) as conn:
        conn.execute("SET dp.epsilon = 2")
        rows = conn.execute(
            "SELECT CASE WHEN age < 30 THEN 'young' WHEN age < 50 THEN 'middle' ELSE 'senior' END AS band, "
            "COUNT(*) FROM employees GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert [r[0] for r in rows] == ["middle", "senior", "young"]
        assert abs(sum(r[1] for r in rows) - 14753) < 30
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("SELECT CASE WHEN age < 30 THEN department END, COUNT(*) FROM employees GROUP BY 1")


def test_people_counts_on_a_multi_row_dataset(  # type: ignore[no-untyped-def]
    proxy: ProxyProcess, data_file
) -> None:
    truth = dict(
        true_rows(
            "SELECT channel, COUNT(DISTINCT user_id) FROM read_parquet(?) GROUP BY 1",
            data_file.parent / "visits.parquet",
        )
    )
    with connect(proxy) as conn:
        conn.execute("SET dp.epsilon = 2")
        rows = conn.execute(
            "SELECT channel, COUNT(DISTINCT user_id) AS people, COUNT(*) AS visits FROM visits "
            "GROUP BY channel"
        ).fetchall()
    for channel, people, low, high, visits, _, _, suppressed in rows:
        assert not suppressed and low <= people <= high
        # each person counts in at most 2 channels: people in their other channels are dropped
        assert people <= truth[channel] + 3 * (high - low)
        assert visits <= 5 * truth[channel] + 3 * (high - low)  # at most 5 visits per person per channel


def test_a_parameter_the_engine_cannot_bind_is_refused_before_any_charge(proxy: ProxyProcess) -> None:
    """pgbench's `age > -:lo` with the value sent as untyped text: a failure of the statement, not
    of the data, so 42804 with a hint and no ε spent (it used to be XX000 after a charge)."""
    before = spent_micro(proxy)
    with connect(proxy) as conn, conn.cursor() as cur:
        with pytest.raises(errors.DatatypeMismatch) as caught:
            cur.execute(
                "SELECT department, COUNT(*) FROM employees WHERE age > -%s GROUP BY department",
                ("30",),
                prepare=True,
            )
        assert "::integer" in (caught.value.diag.message_hint or "")
        row = cur.execute("SELECT COUNT(*) FROM employees WHERE age > -%s::integer", ("30",)).fetchone()
    assert row is not None and spent_micro(proxy) - before == 500_000  # only the cast query was charged
