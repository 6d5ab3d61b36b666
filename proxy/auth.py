"""The policy's users and their SCRAM-SHA-256 verifiers (a user without one logs in with a JWT).

An unknown user gets a made-up verifier derived from a per-process secret, so the exchange looks
the same and fails only at the end: the server never reveals which user names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from proxy.scram import ITERATIONS, Verifier
from rewriter.policy import User


class Verifiers:
    def __init__(self, users: dict[str, User]) -> None:
        self._users = users
        self._parsed = {
            name: Verifier.parse(u.password) for name, u in users.items() if u.password is not None
        }
        self._secret = os.urandom(32)

    def known(self, user: str) -> bool:
        return user in self._users

    def has_password(self, user: str) -> bool:
        return user in self._parsed

    def role(self, user: str) -> str:
        return self._users[user].role

    def verifier(self, user: str) -> Verifier:
        if user in self._parsed:
            return self._parsed[user]
        fake = hmac.new(self._secret, user.encode(), hashlib.sha256).digest()
        return Verifier(fake[:16], fake, hashlib.sha256(fake).digest(), ITERATIONS)
