"""What admins run: policy validation, hot reload, production guards, rate limits and connection caps,
and the compose file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.proxy_process import ROOT, ProxyProcess, start_proxy, write_policy


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
    )


def test_validate_accepts_the_demo_policy(tmp_path: Path, data_file: Path) -> None:
    out = cli("validate", "--policy", str(write_policy(tmp_path, data_file)))
    assert out.returncode == 0, out.stdout
    assert "is valid" in out.stdout
    assert "employees.salary: 54 of 14753 values lie outside the declared bounds (clipped)" in out.stdout


def test_validate_names_bounds_that_do_not_fit_the_data(tmp_path: Path, data_file: Path) -> None:
    policy = write_policy(
        tmp_path, data_file, **{"columns.salary.upper": 90000, "columns.bonus": {"type": "double"}}
    )
    out = cli("validate", "--policy", str(policy))
    assert out.returncode == 1
    assert "problem: employees.salary:" in out.stdout and "outside the declared bounds [20000" in out.stdout
    assert "problem: employees.bonus: declared in the policy but not in the source" in out.stdout
    assert "is NOT valid" in out.stdout


def test_validate_reports_schema_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  employees:\n    source: x.parquet\n")
    out = cli("validate", "--policy", str(bad))
    assert out.returncode == 1 and "is invalid" in out.stdout and "privacy_unit" in out.stdout


def wait_for(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_policy_hot_reload_applies_valid_changes_and_refuses_invalid_ones(
    tmp_path: Path, data_file: Path
) -> None:
    policy_path = write_policy(tmp_path, data_file, **{"budget.epsilon": 100.0})
    proxy = start_proxy(policy_path, tmp_path)
    try:
        query = "SELECT AVG(age) FROM employees"

        def age_refused() -> bool:
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                try:
                    conn.execute(query)
                except psycopg.errors.InsufficientPrivilege:
                    return True
                return False

        assert not age_refused()
        policy = yaml.safe_load(policy_path.read_text())
        del policy["datasets"]["employees"]["columns"]["age"]
        policy_path.write_text(yaml.safe_dump(policy))  # the file watcher picks it up
        wait_for(age_refused)

        policy_path.write_text("datasets: [this is: not a policy")
        proxy.process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:  # still served by the last good one
            assert conn.execute("SELECT COUNT(*) FROM employees").fetchone()
        with psycopg.connect(proxy.dsn("auditor"), autocommit=True) as conn:
            kinds = [r[0] for r in conn.execute("SELECT kind FROM privacylens.audit ORDER BY id")]
        assert kinds[0] == "policy loaded" and "policy reloaded" in kinds
        wait_for(lambda: "policy reload refused" in audit_kinds(proxy))
    finally:
        proxy.stop()
    assert proxy.process.returncode is not None


def audit_kinds(proxy: ProxyProcess) -> list[str]:
    with psycopg.connect(proxy.dsn("auditor"), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT kind FROM privacylens.audit ORDER BY id")]


def test_production_mode_refuses_development_settings(tmp_path: Path, data_file: Path) -> None:
    out = cli(
        "serve", "--policy", str(write_policy(tmp_path, data_file)), "--ledger", str(tmp_path / "l.sqlite"),
        "--port", "0", "--mode", "production",
        env={"PRIVACYLENS_JWT_SECRET": "secret", "PRIVACYLENS_JWT_ISSUER": "dev"},
    )  # fmt: skip
    assert out.returncode == 1
    assert "refusing to start in production mode" in out.stderr
    assert "TLS is not required" in out.stderr
    assert 'user "analyst" has a well-known password' in out.stderr
    assert "jwt_secret is shorter than 32 bytes" in out.stderr


def test_rate_limit_per_user_whatever_the_database_name(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(_args=["--max-queries-per-minute", "5"], **{"budget.epsilon": 1000.0})
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for age in range(20, 25):
            conn.execute(f"SELECT COUNT(*) FROM employees WHERE age > {age}")
        with pytest.raises(psycopg.errors.TooManyConnections, match="rate limit reached") as raised:
            conn.execute("SELECT COUNT(*) FROM employees")
        assert "Retry in" in (raised.value.diag.message_hint or "")
        with pytest.raises(psycopg.errors.TooManyConnections):  # data-less statements count too
            conn.execute("SELECT count(*) FROM pg_catalog.pg_class")
        conn.execute("SHOW dp.epsilon")
    other_database = proxy.dsn().rsplit("/", 1)[0] + "/finance"  # picking another dbname resets nothing
    with (
        psycopg.connect(other_database, autocommit=True) as conn,
        pytest.raises(psycopg.errors.TooManyConnections),
    ):
        conn.execute("SELECT COUNT(*) FROM employees WHERE age > 40")
    with psycopg.connect(proxy.dsn("analyst2"), autocommit=True) as conn:
        conn.execute("SELECT COUNT(*) FROM employees WHERE age > 40")


def test_connection_caps(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(_args=["--max-connections-per-user", "2", "--max-connections", "3"])
    first, second = (psycopg.connect(proxy.dsn(), autocommit=True) for _ in range(2))
    try:
        with pytest.raises(psycopg.OperationalError, match='too many connections for user "analyst"'):
            psycopg.connect(proxy.dsn(), autocommit=True)
        third = psycopg.connect(proxy.dsn("analyst2"), autocommit=True)
        with pytest.raises(psycopg.OperationalError, match="too many clients already"):
            psycopg.connect(proxy.dsn("auditor"), autocommit=True)
        third.close()
        second.close()
        time.sleep(0.3)
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:  # a slot is free again
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        first.close()
        second.close()


def test_compose_file_validates() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("PRIVACYLENS_REQUIRE_CLIENTS"):
            raise AssertionError("docker-compose is not installed (make clients installs it)")
        pytest.skip("docker-compose is not installed")
    out = subprocess.run([binary, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert set(config["services"]) == {"proxy", "ledger-db", "prometheus", "grafana"}
    ledger = config["services"]["proxy"]["environment"]["PRIVACYLENS_LEDGER"]
    assert ledger.startswith("postgresql://") and "@ledger-db:5432/" in ledger  # replicas share one ledger
    mounted = {
        v["source"] if isinstance(v, dict) else v.split(":")[0]
        for v in config["services"]["grafana"]["volumes"]
    }
    assert any(str(m).endswith("grafana/provisioning") for m in mounted)
    for relative in (
        "configs/prometheus.yml",
        "configs/privacylens.env",
        "configs/grafana.env",
        "Dockerfile",
    ):
        assert (ROOT / relative).exists(), relative


def test_a_proxy_that_cannot_start_says_why_in_one_line(tmp_path: Path, data_file: Path) -> None:
    missing = tmp_path / "gone.parquet"
    policy = write_policy(tmp_path, data_file)
    policy.write_text(policy.read_text().replace(str(data_file), str(missing)))
    for args, words in (
        (["--policy", str(policy)], "matches no file"),
        (["--policy", str(write_policy(tmp_path, data_file)), "--duckdb-memory-limit", "lots"],
         "duckdb_memory_limit 'lots'"),
        (["--policy", str(tmp_path / "nowhere.yaml")], "cannot read policy"),
    ):  # fmt: skip
        out = cli("serve", *args, "--ledger", str(tmp_path / "l.sqlite"), "--port", "0")
        assert out.returncode == 2, out.stderr
        assert "cannot start" in out.stderr and words in out.stderr and "Traceback" not in out.stderr
