"""asyncpg: $n parameters, prepared statements, binary result types, refusals."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import asyncpg
import pytest

from tests.proxy_process import ProxyProcess


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_parameters_prepared_and_binary_types(proxy: ProxyProcess) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(proxy.dsn())
        try:
            assert await conn.fetchval("SELECT 1") == 1
            row = await conn.fetchrow(
                "SELECT COUNT(*) AS n, AVG(salary) FROM employees WHERE department = $1", "Sales"
            )
            assert row["n_ci_low"] <= row["n"] <= row["n_ci_high"]
            assert isinstance(row["avg"], float) and row["suppressed"] is False
            statement = await conn.prepare(
                "SELECT department, COUNT(*) FROM employees WHERE hire_date >= $1 GROUP BY department"
            )
            assert [a.type.name for a in statement.get_attributes()] == [
                "text",
                "int8",
                "int8",
                "int8",
                "bool",
            ]
            assert [p.name for p in statement.get_parameters()] == ["date"]
            for since in (dt.date(2010, 1, 1), dt.date(2020, 1, 1)):
                rows = await statement.fetch(since)
                assert len(rows) == 10
            typed = await conn.fetchrow(
                "SELECT 1.5::numeric AS n, true AS b, 'x'::text AS t, DATE '2020-01-02' AS d, 2::int2 AS s, "
                "1e300::float8 AS f, ARRAY['a', 'b c'] AS a"
            )
            assert typed["n"] == Decimal("1.5") and typed["b"] is True and typed["t"] == "x"
            assert typed["d"] == dt.date(2020, 1, 2) and typed["s"] == 2 and typed["f"] == 1e300
            assert typed["a"] == ["a", "b c"]
            # binary parameters of several types (asyncpg sends binary)
            assert await conn.fetchval("SELECT $1::numeric + 1", Decimal("1.25")) == 2.25
            assert await conn.fetchval("SELECT $1::int8 * 2", 21) == 42
            assert await conn.fetchval("SELECT $1::date", dt.date(2021, 3, 4)) == dt.date(2021, 3, 4)
            stamp = dt.datetime(2021, 3, 4, 5, 6, 7)
            assert await conn.fetchval("SELECT $1::timestamp", stamp) == stamp
            with pytest.raises(asyncpg.FeatureNotSupportedError):
                await conn.fetch("SELECT * FROM employees")
            assert await conn.fetchval("SELECT 2") == 2
        finally:
            await conn.close()

    run(scenario())


def test_asyncpg_over_tls(tls_proxy: ProxyProcess) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(tls_proxy.dsn(), ssl="require")
        try:
            assert conn.get_server_version().major == 15
            row = await conn.fetchrow("SELECT COUNT(*) AS n FROM employees WHERE department = $1", "Legal")
            assert row["n_ci_low"] <= row["n"] <= row["n_ci_high"]
        finally:
            await conn.close()

    run(scenario())
