"""JWT as the password: accepted only when valid for this user, only inside TLS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import psycopg
import pytest
from psycopg import errors

from proxy.tokens import TokenVerifier
from tests.proxy_process import ROOT, ProxyProcess

SECRET = "a-test-secret-that-is-long-enough-for-every-hmac-size-0123456789abcdef"
ISSUER = "https://idp.example.test"
AUDIENCE = "privacylens"


@pytest.fixture(scope="module")
def jwt_proxy(proxy_factory: Callable[..., ProxyProcess], certificate: tuple[Path, Path]) -> ProxyProcess:
    cert, key = certificate
    return proxy_factory(
        _args=[
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--jwt-secret",
            SECRET,
            "--jwt-issuer",
            ISSUER,
            "--max-login-failures-per-user",
            "0",  # these tests send many bad tokens for one user on purpose
            "--max-login-failures-per-address",
            "0",
        ],
        **{"budget.epsilon": 1000.0},
    )


def token(
    sub: str = "alice",
    role: str = "analyst",
    secret: str = SECRET,
    algorithm: str = "HS256",
    drop: tuple[str, ...] = (),
    **overrides: object,
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "role": role,
        "aud": AUDIENCE,
        "iss": ISSUER,
        "nbf": now - 5,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    for name in drop:
        claims.pop(name)
    return jwt.encode(claims, secret, algorithm=algorithm)


def connect(proxy: ProxyProcess, user: str, password: str, sslmode: str = "require") -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=proxy.port,
        user=user,
        password=password,
        dbname="demo",
        sslmode=sslmode,
        autocommit=True,
        connect_timeout=10,
    )


def test_valid_token_logs_in_with_its_role_and_own_budget(jwt_proxy: ProxyProcess) -> None:
    with connect(jwt_proxy, "alice", token()) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        assert conn.execute("SELECT COUNT(*) FROM employees").fetchone() is not None
        assert "(999.50 left)" in notices[0]
        assert conn.execute("SELECT current_user").fetchone() == ("alice",)


def test_token_role_auditor_cannot_read_data(jwt_proxy: ProxyProcess) -> None:
    with connect(jwt_proxy, "carol", token(sub="carol", role="auditor")) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT COUNT(*) FROM employees")
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize(
    "bad",
    [
        token(
            secret="another-secret-that-is-long-enough-for-every-hmac-size-0123456789ab"
        ),  # forged signature
        token(exp=int(time.time()) - 3600),  # expired
        token(nbf=int(time.time()) + 3600),  # not yet valid
        token(aud="someone-else"),
        token(iss="https://evil.example"),
        token(sub="mallory"),  # subject is not the user name
        token(drop=("exp",)),
        token(drop=("aud",)),
        token(role="superuser"),  # no known role for a user outside the policy
        token(algorithm="HS512"),  # algorithm not pinned
        jwt.encode(
            {
                "sub": "alice",
                "aud": AUDIENCE,
                "iss": ISSUER,
                "exp": int(time.time()) + 600,
                "nbf": int(time.time()),
            },
            None,
            algorithm="none",
        ),  # unsigned
    ],
)
def test_bad_tokens_are_refused(jwt_proxy: ProxyProcess, bad: str) -> None:
    with pytest.raises(psycopg.OperationalError) as raised:
        connect(jwt_proxy, "alice", bad)
    assert 'password authentication failed for user "alice"' in str(raised.value)


def test_token_over_a_plain_connection_is_refused(jwt_proxy: ProxyProcess) -> None:
    with pytest.raises(psycopg.OperationalError):
        connect(jwt_proxy, "alice", token(), sslmode="disable")


def test_policy_password_still_works_inside_tls(jwt_proxy: ProxyProcess) -> None:
    with connect(jwt_proxy, "analyst", "demo") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        connect(jwt_proxy, "analyst", "wrong")


def test_cli_issues_a_working_development_token(jwt_proxy: ProxyProcess) -> None:
    env = {
        **os.environ,
        "PRIVACYLENS_JWT_SECRET": SECRET,
        "PRIVACYLENS_JWT_ISSUER": ISSUER,
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "issue-token", "--user", "dave"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    with connect(jwt_proxy, "dave", out.stdout.strip()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("dave",)


def test_unsafe_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenVerifier.configure("HS256", "short", "", AUDIENCE, ISSUER)
    with pytest.raises(ValueError, match="algorithms"):
        TokenVerifier.configure("HS256,RS256", SECRET, "", AUDIENCE, ISSUER)
    with pytest.raises(ValueError, match="jwt_issuer"):
        TokenVerifier.configure("HS256", SECRET, "", AUDIENCE, "")
    assert TokenVerifier.configure("HS256", "", "", AUDIENCE, ISSUER) is None
