from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from demo import employees, visits
from proxy.tls import make_self_signed
from tests.postgres_server import PostgresServer, start_postgres
from tests.postgres_server import available as postgres_available
from tests.proxy_process import ProxyProcess, start_proxy, write_policy


@pytest.fixture(scope="session")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    visits.generate(directory / "visits.parquet")
    path = directory / "employees.parquet"
    employees.generate(path)
    return path


@pytest.fixture(scope="session")
def proxy_factory(
    tmp_path_factory: pytest.TempPathFactory, data_file: Path
) -> Iterator[Callable[..., ProxyProcess]]:
    """Start a real proxy with the demo policy, dataset keys overridden as keyword arguments."""
    started: list[ProxyProcess] = []
    workdir = tmp_path_factory.mktemp("proxy")

    def start(_args: list[str] | None = None, **overrides: object) -> ProxyProcess:
        proxy = start_proxy(write_policy(workdir, data_file, **overrides), workdir, args=_args)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="session")
def proxy(proxy_factory: Callable[..., ProxyProcess]) -> ProxyProcess:
    """A shared proxy with a large budget, for tests that do not count budget."""
    return proxy_factory(**{"budget.epsilon": 100000.0})


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "server.crt", directory / "server.key"
    make_self_signed(cert, key)
    return cert, key


@pytest.fixture(scope="session")
def tls_proxy(proxy_factory: Callable[..., ProxyProcess], certificate: tuple[Path, Path]) -> ProxyProcess:
    cert, key = certificate
    return proxy_factory(_args=["--tls-cert", str(cert), "--tls-key", str(key)], **{"budget.epsilon": 1000.0})


@pytest.fixture(scope="session")
def tls_only_proxy(
    proxy_factory: Callable[..., ProxyProcess], certificate: tuple[Path, Path]
) -> ProxyProcess:
    cert, key = certificate
    return proxy_factory(_args=["--tls-cert", str(cert), "--tls-key", str(key), "--tls-required", "true"])


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 server, started by the suite (tests/postgres_server.py)."""
    if not postgres_available():
        pytest.fail("PostgreSQL 15 server binaries are missing (/usr/lib/postgresql/15/bin)")
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a store under test keeps its tables: a SQLite file, then a database on the suite's
    PostgreSQL."""
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.sqlite")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        yield server.create_database(f"store_{abs(hash(str(tmp_path))) % 10**8}")
