"""Every proxy setting, declared once: name, default, help. CLI flags and PRIVACYLENS_* env vars.

`docs/configuration.md` lists these; `tests/test_settings_documented.py` fails if one is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str


SETTINGS = (
    Setting("host", "127.0.0.1", "Address to listen on."),
    Setting("port", "6432", "TCP port for PostgreSQL clients."),
    Setting("policy", "policies/demo.yaml", "Policy file (datasets, budgets, users)."),
    Setting(
        "ledger",
        "var/ledger.sqlite",
        "Where the ledger, audit log, answers and alerts live: a SQLite file (WAL mode), or a "
        "postgresql:// URL that several replicas share.",
    ),
    Setting(
        "activity_store",
        "var/activity",
        "Folder of activity datasets' events (Parquet segments per dataset and month) and erasure "
        "journals; replicas sharing a PostgreSQL ledger must share this folder too.",
    ),
    Setting("tls_cert", "", "PEM certificate; with tls_key, SSLRequests are answered and upgraded to TLS."),
    Setting("tls_key", "", "PEM private key of tls_cert."),
    Setting("tls_required", "false", "true: refuse clients that do not use TLS (28000)."),
    Setting(
        "jwt_algorithms",
        "HS256",
        "Pinned JWT algorithms: HS* with jwt_secret, or RS*/ES*/PS* with jwt_public_key.",
    ),
    Setting("jwt_secret", "", "Shared HMAC secret (32+ bytes) for JWT login; set through the environment."),
    Setting("jwt_public_key", "", "PEM public key file for RS/ES/PS-signed tokens."),
    Setting("jwt_audience", "privacylens", "Required `aud` claim of accepted tokens."),
    Setting("jwt_issuer", "", "Required `iss` claim of accepted tokens (JWT login needs it)."),
    Setting("jwt_role_claim", "role", "Claim holding the role of users who are not listed in the policy."),
    Setting("metrics_port", "0", "Port of the Prometheus /metrics endpoint on `host` (0: off)."),
    Setting(
        "metrics_token",
        "",
        "Bearer token /metrics requires (`Authorization: Bearer <token>`); set through the environment. "
        "Required in production mode when metrics are on.",
    ),
    Setting("auth_timeout", "30", "Seconds a client has to finish start-up and authentication."),
    Setting(
        "statement_timeout",
        "300",
        "Longest any statement may run, in seconds (0: no limit); sessions "
        "may SET a shorter statement_timeout.",
    ),
    Setting(
        "duckdb_memory_limit",
        "4GB",
        "Memory the embedded DuckDB engine may use (its memory_limit); beyond it, aggregates spill to "
        "a private temporary folder.",
    ),
    Setting(
        "workers",
        "1",
        "Worker processes serving the port (SO_REUSEPORT), at most 16: more than one uses more cores; "
        "they share the ledger, limits, cancel keys and metrics (docs/operations.md, Workers).",
    ),
    Setting("log_level", "INFO", "Python logging level for the proxy's log on stderr."),
    Setting(
        "mode",
        "development",
        "production: refuse to start with development settings (no TLS, demo passwords, weak or "
        "placeholder JWT secrets, the self-signed development certificate).",
    ),
    Setting("max_connections", "200", "Most client connections at once (0: no cap); more get 53300."),
    Setting("max_connections_per_user", "50", "Most connections one user may hold (0: no cap)."),
    Setting(
        "max_queries_per_minute",
        "600",
        "Queries (DP and data-less) each user may run per minute (0: no limit); more get 53300.",
    ),
    Setting(
        "max_login_failures_per_user",
        "10",
        "Failed logins one user name may have in a minute (0: no limit); further attempts get 28000 "
        "until the oldest failure is a minute old.",
    ),
    Setting(
        "max_login_failures_per_address",
        "30",
        "Failed logins one client address may have in a minute, over all user names (0: no limit).",
    ),
)


@dataclass(frozen=True)
class ProxySettings:
    host: str
    port: int
    policy: str
    ledger: str
    activity_store: str
    tls_cert: str
    tls_key: str
    tls_required: bool
    jwt_algorithms: str
    jwt_secret: str
    jwt_public_key: str
    jwt_audience: str
    jwt_issuer: str
    jwt_role_claim: str
    metrics_port: int
    metrics_token: str
    auth_timeout: float
    statement_timeout: float
    duckdb_memory_limit: str
    workers: int
    log_level: str
    mode: str
    max_connections: int
    max_connections_per_user: int
    max_queries_per_minute: int
    max_login_failures_per_user: int
    max_login_failures_per_address: int

    @classmethod
    def resolve(cls, overrides: dict[str, str | None]) -> ProxySettings:
        """Precedence: explicit override (CLI flag), then PRIVACYLENS_<NAME>, then the default."""
        values: dict[str, str] = {}
        for setting in SETTINGS:
            override = overrides.get(setting.name)
            env = os.environ.get(f"PRIVACYLENS_{setting.name.upper()}")
            values[setting.name] = (
                override if override is not None else env if env is not None else setting.default
            )
        types = {f.name: f.type for f in fields(cls)}
        converted = {name: _convert(name, v, types[name]) for name, v in values.items()}
        return cls(**converted)  # type: ignore[arg-type]


def _convert(name: str, value: str, type_name: object) -> object:
    if type_name == "int":
        return int(value)
    if type_name == "float":
        return float(value)
    if type_name == "bool":
        if value.lower() not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
            raise ValueError(f"setting {name} must be true or false, not {value!r}")
        return value.lower() in ("true", "1", "on", "yes")
    return value
