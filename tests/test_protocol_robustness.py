"""Malformed protocol input gets an error or a closed socket, never a crashed or stuck server."""

from __future__ import annotations

import socket
import struct

import psycopg
import pytest

from tests.proxy_process import ProxyProcess


def send_raw(proxy: ProxyProcess, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x00\x00\x03",  # length below the minimum
        b"\x7f\xff\xff\xff" + b"x" * 16,  # absurd length
        struct.pack("!ii", 8, 1234),  # unknown protocol code
        struct.pack("!ii", 16, 196608) + b"user\x00",  # truncated startup parameters
        struct.pack("!ii", 8, 80877103) + b"garbage after SSLRequest",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_garbage_does_not_hurt_the_server(proxy: ProxyProcess, payload: bytes) -> None:
    reply = send_raw(proxy, payload)
    assert reply == b"" or reply[:1] in (b"E", b"N", b"R")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_missing_user_is_a_fatal_error(proxy: ProxyProcess) -> None:
    body = struct.pack("!i", 196608) + b"database\x00demo\x00\x00"
    reply = send_raw(proxy, struct.pack("!i", len(body) + 4) + body)
    assert reply[:1] == b"E" and b"FATAL" in reply


def test_invalid_utf8_query_is_22021_and_the_session_continues(proxy: ProxyProcess) -> None:
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.pgconn.send_query(b"SELECT '\xff\xfe'")
        result = conn.pgconn.get_result()
        while conn.pgconn.get_result() is not None:
            pass
        assert result is not None and result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"22021"
        assert conn.execute("SELECT 1").fetchone() == (1,)
