"""SCRAM-SHA-256 (RFC 5802 / RFC 7677), server side, as PostgreSQL speaks it.

libpq and most drivers send an empty user name in the SCRAM exchange (`n=`) because the user was
already named in the StartupMessage; `scramp` rejects that, which is why this small module exists
(docs/decisions/0004-scram-in-stdlib.md). Channel binding (SCRAM-SHA-256-PLUS) is not offered, so a
client may send `n` or `y` in its GS2 header but never `p`.

>>> verifier = make_verifier("demo", salt=b"0123456789abcdef")
>>> verifier.startswith("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$")
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

MECHANISM = "SCRAM-SHA-256"
ITERATIONS = 4096


class ScramError(Exception):
    """The exchange is malformed or the proof is wrong."""


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    server_key = _hmac(salted, b"Server Key")
    return f"{MECHANISM}${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


@dataclass(frozen=True)
class Verifier:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    @classmethod
    def parse(cls, text: str) -> Verifier:
        try:
            scheme, rest = text.split("$", 1)
            iter_salt, keys = rest.split("$", 1)
            iterations, salt = iter_salt.split(":", 1)
            stored_key, server_key = keys.split(":", 1)
            if scheme != MECHANISM:
                raise ValueError(scheme)
            b64d = base64.b64decode
            return cls(
                b64d(salt, validate=True),
                b64d(stored_key, validate=True),
                b64d(server_key, validate=True),
                int(iterations),
            )
        except ValueError as err:
            raise ValueError("not a SCRAM-SHA-256 verifier") from err


def _attributes(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ScramError("malformed SCRAM attribute")
        out[part[0]] = part[2:]
    return out


class ScramServer:
    """One exchange: `first(client_first) -> server_first`, `final(client_final) -> server_final`."""

    def __init__(self, verifier: Verifier, server_nonce: str | None = None) -> None:
        self.verifier = verifier
        self._server_nonce = server_nonce or _b64(os.urandom(18))
        self._nonce = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._gs2_header = ""

    def first(self, client_first: str) -> str:
        parts = client_first.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y") or parts[1] != "":
            raise ScramError("unsupported GS2 header (channel binding is not offered)")
        self._gs2_header = f"{parts[0]},,"
        self._client_first_bare = parts[2]
        attrs = _attributes(self._client_first_bare)
        client_nonce = attrs.get("r", "")
        if not client_nonce or "m" in attrs:
            raise ScramError("missing client nonce")
        self._nonce = client_nonce + self._server_nonce
        v = self.verifier
        self._server_first = f"r={self._nonce},s={_b64(v.salt)},i={v.iterations}"
        return self._server_first

    def final(self, client_final: str) -> str:
        without_proof, sep, proof_b64 = client_final.rpartition(",p=")
        if not sep:
            raise ScramError("missing proof")
        attrs = _attributes(without_proof)
        if attrs.get("c") != _b64(self._gs2_header.encode()) or attrs.get("r") != self._nonce:
            raise ScramError("channel binding or nonce mismatch")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError as err:
            raise ScramError("malformed proof") from err
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(self.verifier.stored_key, auth_message)
        if len(proof) != len(signature):
            raise ScramError("wrong proof length")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self.verifier.stored_key):
            raise ScramError("wrong password")
        return "v=" + _b64(_hmac(self.verifier.server_key, auth_message))


def password_matches(verifier: Verifier, password: str) -> bool:
    """Check a cleartext password (sent inside TLS) against a stored SCRAM verifier."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), verifier.salt, verifier.iterations)
    stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    return hmac.compare_digest(stored_key, verifier.stored_key)
