"""Start-up guards: `mode = production` refuses development settings before the server listens.

Each check names what is wrong and how to fix it; all problems are reported at once.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from proxy.scram import Verifier, password_matches
from proxy.settings import ProxySettings
from rewriter.policy import Policy

WELL_KNOWN_PASSWORDS = (
    "demo",
    "password",
    "admin",
    "analyst",
    "auditor",
    "privacylens",
    "changeme",
    "secret",
)
PLACEHOLDER_SECRETS = ("change-me", "changeme", "secret", "development", "dev", "test", "example")
DEVELOPMENT_ORGANIZATION = "PrivacyLens development"  # what `privacylens make-cert` writes


class UnsafeForProduction(SystemExit):
    """Raised with every problem found: the process prints them and exits with status 1."""


def production_problems(settings: ProxySettings, policy: Policy) -> list[str]:
    problems = []
    if not settings.tls_cert or not settings.tls_required:
        problems.append("TLS is not required: set tls_cert, tls_key and tls_required = true")
    elif _is_development_certificate(Path(settings.tls_cert)):
        problems.append(f"{settings.tls_cert} is the self-signed development certificate (make-cert)")
    for name, user in sorted(policy.users.items()):
        if user.password is None:
            continue
        for candidate in (*WELL_KNOWN_PASSWORDS, name):
            if password_matches(Verifier.parse(user.password), candidate):
                problems.append(
                    f'user "{name}" has a well-known password; set a new verifier (hash-password)'
                )
                break
    secret = settings.jwt_secret
    if secret and (len(secret.encode()) < 32 or secret.lower().strip() in PLACEHOLDER_SECRETS):
        problems.append("jwt_secret is shorter than 32 bytes or a placeholder: use `openssl rand -hex 32`")
    if settings.metrics_port and len(settings.metrics_token) < 16:
        problems.append(
            "metrics are on without a metrics_token of 16+ characters: /metrics would be open to anyone "
            "who reaches the port (set PRIVACYLENS_METRICS_TOKEN)"
        )
    if settings.jwt_secret and not settings.jwt_issuer:
        problems.append("jwt_secret is set without jwt_issuer")
    return problems


def check_production(settings: ProxySettings, policy: Policy) -> None:
    if settings.mode not in ("development", "production"):
        raise UnsafeForProduction(f"mode must be development or production, not {settings.mode!r}")
    if settings.mode != "production":
        return
    problems = production_problems(settings, policy)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise UnsafeForProduction(f"refusing to start in production mode:\n{lines}\nSee docs/operations.md.")


def _is_development_certificate(path: Path) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    organizations = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return any(o.value == DEVELOPMENT_ORGANIZATION for o in organizations)
