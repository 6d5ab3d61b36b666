"""Over the wire: released counts are unbiased and their 95% intervals cover the true count."""

from __future__ import annotations

import statistics
from pathlib import Path

import duckdb
import psycopg

from privacy.mechanisms import Laplace
from tests.proxy_process import ProxyProcess

DRAWS = 300


def test_released_count_noise_matches_theory(proxy: ProxyProcess, data_file: Path) -> None:
    with duckdb.connect() as con:
        (truth,) = con.execute(
            "SELECT COUNT(*) FROM read_parquet(?) WHERE department = 'Legal'", [str(data_file)]
        ).fetchone()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET dp.epsilon = 1")
        rows = [  # an always-true extra filter makes each a new question, so each gets fresh noise
            conn.execute(
                f"SELECT COUNT(*) AS n FROM employees WHERE department = 'Legal' AND age <> -{i}"
            ).fetchone()
            for i in range(DRAWS)
        ]
    values = [r[0] for r in rows]
    covered = sum(1 for n, low, high, _ in rows if low <= truth <= high)
    # ε = 1, of which 0.7 for the count: discrete Laplace with scale 1/0.7.
    sd = Laplace(1 / 0.7, discrete=True).standard_deviation()
    assert abs(statistics.fmean(values) - truth) < 5 * sd / DRAWS**0.5
    assert covered / DRAWS >= 0.95 - 0.05  # exact coverage is ≥ 95%; 0.05 is 4 standard errors at n=300
    assert 0.7 < statistics.pstdev(values) / sd < 1.3  # ≈ 4 standard errors of an sd estimate at n=300
