"""TLS: sslmode=require works with psql and psycopg; tls_required refuses plain connections."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.proxy_process import ProxyProcess


def test_psycopg_sslmode_require(tls_proxy: ProxyProcess) -> None:
    with psycopg.connect(tls_proxy.dsn() + "?sslmode=require", autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
        row = conn.execute("SELECT COUNT(*) FROM employees WHERE department = %s", ("Sales",)).fetchone()
        assert row is not None and row[1] <= row[0] <= row[2]


def test_certificate_verifies_against_itself(tls_proxy: ProxyProcess, certificate: tuple[Path, Path]) -> None:
    dsn = f"{tls_proxy.dsn()}?sslmode=verify-full&sslrootcert={certificate[0]}&host=localhost"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use


def test_plain_connections_still_work_when_tls_is_optional(tls_proxy: ProxyProcess) -> None:
    with psycopg.connect(tls_proxy.dsn() + "?sslmode=disable", autocommit=True) as conn:
        assert not conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_tls_required_refuses_plain_connections(tls_only_proxy: ProxyProcess) -> None:
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(tls_only_proxy.dsn() + "?sslmode=disable")
    assert "accepts TLS connections only" in str(raised.value)
    with psycopg.connect(tls_only_proxy.dsn() + "?sslmode=require", autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_bytes_pipelined_after_ssl_request_are_refused(tls_proxy: ProxyProcess) -> None:
    """CVE-2021-23214 pattern: plaintext queued behind the SSLRequest must not be read as TLS-protected."""
    startup = struct.pack("!i", 196608) + b"user\x00analyst\x00\x00"
    payload = struct.pack("!ii", 8, 80877103) + struct.pack("!i", len(startup) + 4) + startup
    with socket.create_connection(("127.0.0.1", tls_proxy.port), timeout=5) as s:
        s.sendall(payload)
        reply = b""
        while chunk := s.recv(1024):
            reply += chunk
    # Either refused outright, or (if the bytes arrived after the check) the plaintext is fed to the
    # TLS handshake, which fails: never an authentication request answered in plain text.
    assert (reply.startswith(b"E") and b"unencrypted data" in reply) or reply == b"S"


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
def test_psql_sslmode_require(tls_proxy: ProxyProcess) -> None:
    out = subprocess.run(
        [
            "psql",
            f"postgresql://analyst@127.0.0.1:{tls_proxy.port}/demo?sslmode=require",
            "-X",
            "-c",
            "\\conninfo",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": "demo"},
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "SSL connection (protocol: TLSv1.3" in out.stdout
