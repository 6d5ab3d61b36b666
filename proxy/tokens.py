"""JWT login: a token from the organisation's identity provider accepted as the password.

Algorithms are pinned by configuration and must match the key: HS256/384/512 with a shared secret,
RS*/ES*/PS* with a PEM public key (so an RSA public key can never be used as an HMAC secret).
`exp`, `nbf`, `aud`, `iss` and `sub` are required; `sub` must equal the user name of the start-up
message. The role comes from the policy when the user is listed there, else from a claim.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from rewriter.roles import ROLES

SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})
LEEWAY_SECONDS = 30


class TokenRejected(Exception):
    """The token is not valid for this user; the reason is logged, never sent to the client."""


@dataclass(frozen=True)
class TokenVerifier:
    algorithms: tuple[str, ...]
    key: str
    audience: str
    issuer: str
    role_claim: str = "role"

    @classmethod
    def configure(
        cls,
        algorithms: str,
        secret: str,
        public_key_file: str,
        audience: str,
        issuer: str,
        role_claim: str = "role",
    ) -> TokenVerifier | None:
        """None when no key is configured (JWT login off); ValueError for an unsafe configuration."""
        if not secret and not public_key_file:
            return None
        pinned = tuple(a.strip().upper() for a in algorithms.split(",") if a.strip())
        if secret and public_key_file:
            raise ValueError("configure jwt_secret or jwt_public_key, not both")
        allowed = SYMMETRIC if secret else ASYMMETRIC
        if not pinned or not set(pinned) <= allowed:
            kind = "HS256/HS384/HS512" if secret else "RS*/ES*/PS*"
            raise ValueError(f"jwt_algorithms must list {kind} algorithms for this key, got {algorithms!r}")
        if secret and len(secret.encode()) < 32:
            raise ValueError("jwt_secret must be at least 32 bytes")
        if not audience or not issuer:
            raise ValueError("jwt_audience and jwt_issuer are required when JWT login is on")
        key = secret or Path(public_key_file).read_text()
        return cls(pinned, key, audience, issuer, role_claim)

    def verify(self, token: str, user: str) -> dict:
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "nbf", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as err:
            raise TokenRejected(str(err)) from err
        if claims.get("sub") != user:
            raise TokenRejected("the token's subject is not the user name")
        return claims

    def role(self, claims: dict) -> str | None:
        role = claims.get(self.role_claim)
        return role if role in ROLES else None


def looks_like_token(password: str) -> bool:
    parts = password.split(".")
    return len(parts) == 3 and all(parts) and password.startswith("eyJ")


def issue_development_token(
    secret: str,
    user: str,
    role: str,
    audience: str,
    issuer: str,
    ttl_seconds: int = 3600,
    algorithm: str = "HS256",
) -> str:
    now = int(time.time())
    claims = {
        "sub": user,
        "role": role,
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm=algorithm)
