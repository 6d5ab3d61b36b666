"""A throwaway PostgreSQL 15 cluster for the suite: initdb in a temp folder, a free port, trust auth.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` OS user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.proxy_process import free_port

BIN = Path(os.environ.get("PRIVACYLENS_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PostgresServer:
    directory: Path
    port: int

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _as_owner(
            [str(BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "stop"], check=False
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def available() -> bool:
    return (BIN / "initdb").exists()


def start_postgres() -> PostgresServer:
    directory = Path(tempfile.mkdtemp(prefix="privacylens-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    port = free_port()
    data = directory / "data"
    _as_owner(
        [str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]
    )
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200"
    _as_owner(
        [str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"), "-w", "start"]
    )
    server = PostgresServer(directory, port)
    deadline = time.monotonic() + 30
    import psycopg

    while True:
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _as_owner(command: list[str], check: bool = True) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=check, capture_output=True, cwd="/")
