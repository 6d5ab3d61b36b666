"""Failed logins are audited and throttled per user name and per client address, the same way for
user names that exist and names that do not."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import asyncpg
import pytest

from pgerrors import AuthenticationFailed, InvalidAuthorization
from proxy.auth import Verifiers
from proxy.limits import LoginThrottle
from proxy.scram import make_verifier
from proxy.startup import _authenticate_cleartext
from proxy.tokens import TokenVerifier
from proxy.wire import codec
from rewriter.policy import User
from tests.proxy_process import ProxyProcess


class Refused(NamedTuple):
    sqlstate: str
    message: str
    hint: str


def login(proxy: ProxyProcess, user: str, password: str) -> Refused | None:
    """Log in with asyncpg (which reports the SQLSTATE of a refused login); None when it succeeds."""

    async def attempt() -> Refused | None:
        try:
            await (await asyncpg.connect(proxy.dsn(user, password), timeout=10)).close()
        except asyncpg.PostgresError as error:
            return Refused(error.sqlstate, error.message, error.hint or "")
        return None

    return asyncio.run(attempt())


def test_wrong_passwords_are_throttled_and_audited(proxy_factory: Callable[..., ProxyProcess]) -> None:
    proxy = proxy_factory(
        _args=["--max-login-failures-per-user", "5", "--max-login-failures-per-address", "12"]
    )
    for _ in range(5):
        error = login(proxy, "analyst", "wrong")
        assert error is not None and error.sqlstate == "28P01"
    # The sixth attempt is refused before the password is looked at: even the right one.
    error = login(proxy, "analyst", "demo")
    assert error is not None and error.sqlstate == "28000"
    assert "too many failed login attempts" in error.message
    assert "Try again in" in error.hint
    # Another user from the same address still logs in, until the address limit is reached.
    assert login(proxy, "auditor", "demo") is None
    for _ in range(5):
        error = login(proxy, "nobody-by-this-name", "wrong")
        assert error is not None and error.sqlstate == "28P01"  # unknown names fail the same way
    assert login(proxy, "nobody-by-this-name", "wrong").sqlstate == "28000"
    for _ in range(2):
        assert login(proxy, "someone-else", "wrong").sqlstate == "28P01"
    error = login(proxy, "auditor", "demo")
    assert error is not None and error.sqlstate == "28000" and "this client address" in error.message
    with sqlite3.connect(proxy.ledger) as db:
        failed = db.execute(
            "SELECT user_name, json_extract(detail, '$.address') FROM audit WHERE kind = 'login failed'"
        ).fetchall()
    assert len(failed) == 12
    assert {u for u, _ in failed} == {"analyst", "nobody-by-this-name", "someone-else"}
    assert {a for _, a in failed} == {"127.0.0.1"}


def test_the_throttle_forgets_failures_after_its_window() -> None:
    throttle = LoginThrottle(per_user=2, per_address=0, window=60.0)
    throttle.failed("u", "a", now=0.0)
    throttle.failed("u", "a", now=10.0)
    with pytest.raises(InvalidAuthorization):
        throttle.admit("u", "a", now=30.0)
    throttle.admit("u", "a", now=60.5)  # the first failure is more than a minute old
    throttle.admit("v", "a", now=30.0)  # other names are not affected


class _Sink:
    """Where the server's replies go in the in-process timing test."""

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


def _failure_seconds(verifiers: Verifiers, tokens: TokenVerifier, user: str) -> float:
    async def attempt() -> float:
        reader = asyncio.StreamReader()
        reader.feed_data(codec.message(b"p", b"wrong-password\x00"))
        start = time.perf_counter()
        with pytest.raises(AuthenticationFailed):
            await _authenticate_cleartext(reader, _Sink(), verifiers, tokens, user)  # type: ignore[arg-type]
        return time.perf_counter() - start

    return statistics.median(asyncio.run(attempt()) for _ in range(41))


def test_unknown_users_fail_as_slowly_as_known_ones() -> None:
    """With JWT login on, passwords arrive in clear inside TLS and the server runs PBKDF2: it runs it
    against a made-up verifier for unknown names too, so the time does not tell which names exist."""
    verifiers = Verifiers({"analyst": User(role="analyst", password=make_verifier("demo"))})
    tokens = TokenVerifier.configure("HS256", "x" * 64, "", "privacylens", "https://idp.example.test", "role")
    assert tokens is not None
    _failure_seconds(verifiers, tokens, "analyst")  # warm up
    known = _failure_seconds(verifiers, tokens, "analyst")
    unknown = _failure_seconds(verifiers, tokens, "no-such-user")
    assert 0.7 < unknown / known < 1.4, (known, unknown)
