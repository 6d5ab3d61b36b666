"""pgJDBC, Go lib/pq and node-postgres, each running its check program against a real proxy.

Each program prints `ok <check>` lines and `all checks passed`. `make test` installs the clients
and sets PRIVACYLENS_REQUIRE_CLIENTS=1, so there a missing client fails instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.proxy_process import ProxyProcess

CLIENTS = Path(__file__).parent / "clients"
JDBC_JAR = Path("/usr/share/java/postgresql.jar")
GOPATH = Path("/usr/share/gocode")


def require(available: bool, what: str) -> None:
    if not available:
        if os.environ.get("PRIVACYLENS_REQUIRE_CLIENTS"):
            pytest.fail(f"{what} is not installed (make clients installs it)")
        pytest.skip(f"{what} is not installed")


def run_check(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )
    assert out.returncode == 0 and "all checks passed" in out.stdout, out.stdout + out.stderr
    return out.stdout


def test_pgjdbc(proxy: ProxyProcess) -> None:
    require(shutil.which("java") is not None and JDBC_JAR.exists(), "pgJDBC")
    out = run_check(["java", "-cp", str(JDBC_JAR), "JdbcCheck.java", str(proxy.port)], CLIENTS)
    assert out.count("ok ") >= 35  # 7 prepared runs x 4 checks, metadata, fetch size, refusal


def test_pgjdbc_sslmode_require(tls_proxy: ProxyProcess) -> None:
    require(shutil.which("java") is not None and JDBC_JAR.exists(), "pgJDBC")
    run_check(["java", "-cp", str(JDBC_JAR), "JdbcCheck.java", str(tls_proxy.port), "require"], CLIENTS)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "sslmode=require"])
def test_go_lib_pq(proxy: ProxyProcess, tls_proxy: ProxyProcess, tmp_path: Path, tls: bool) -> None:
    require(shutil.which("go") is not None and (GOPATH / "src/github.com/lib/pq").exists(), "Go lib/pq")
    env = {"GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(tmp_path / "gocache"), "GOFLAGS": ""}
    port = str((tls_proxy if tls else proxy).port)
    run_check(["go", "run", "libpq_check.go", port, "require" if tls else "disable"], CLIENTS, env)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_node_postgres(proxy: ProxyProcess, tls_proxy: ProxyProcess, tls: bool) -> None:
    require(shutil.which("node") is not None and (CLIENTS / "node/node_modules/pg").exists(), "node-postgres")
    port = str((tls_proxy if tls else proxy).port)
    run_check(["node", "check.js", port, *(["tls"] if tls else [])], CLIENTS / "node")
