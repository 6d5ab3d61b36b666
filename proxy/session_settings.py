"""Session settings clients may SET and SHOW: PostgreSQL's client settings plus `dp.*`.

Engine settings are never passed through: a SET of anything not listed is refused (0A000).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pgerrors import FeatureNotAllowed, InvalidParameterValue, UndefinedObject

SERVER_VERSION = "15.0"
SERVER_VERSION_LONG = f"PostgreSQL {SERVER_VERSION} (PrivacyLens 0.1.0 differential-privacy gateway)"

# Reported at start-up (ParameterStatus) and by SHOW; read-only.
SERVER_PARAMETERS = {
    "server_version": SERVER_VERSION,
    "server_version_num": "150000",
    "server_encoding": "UTF8",
    "integer_datetimes": "on",
    "is_superuser": "off",
    "max_identifier_length": "63",
    "lc_collate": "C",
    "lc_ctype": "C",
    "lc_messages": "C",
    "lc_monetary": "C",
    "lc_numeric": "C",
    "lc_time": "C",
    "max_connections": "100",
    "block_size": "8192",
    "max_index_keys": "32",
    "data_checksums": "off",
    "default_text_search_config": "pg_catalog.simple",
    "port": "6432",
    "listen_addresses": "localhost",
    "ssl": "off",
    "password_encryption": "scram-sha-256",
    "default_transaction_deferrable": "off",
    "max_function_args": "100",
    "wal_level": "minimal",
    "in_hot_standby": "off",
    "array_nulls": "on",
    "backslash_quote": "safe_encoding",
    "escape_string_warning": "on",
    "quote_all_identifiers": "off",
    "row_security": "on",
    "synchronize_seqscans": "on",
    "transform_null_equals": "off",
}

# Client settings with their defaults; SET stores them for the session.
CLIENT_DEFAULTS = {
    "application_name": "",
    "client_encoding": "UTF8",
    "datestyle": "ISO, MDY",
    "intervalstyle": "postgres",
    "timezone": "UTC",
    "extra_float_digits": "1",
    "standard_conforming_strings": "on",
    "search_path": '"$user", public',
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "client_min_messages": "notice",
    "bytea_output": "hex",
    "default_transaction_isolation": "read committed",
    "transaction_isolation": "read committed",
    "default_transaction_read_only": "off",
    "transaction_read_only": "off",
    "jit": "off",
    "dp.epsilon": "",
    "dp.confidence": "",
    "dp.delta": "",
    "dp.mechanism": "",
    "dp.target_ci_width": "",
}

# Reported to the client in ParameterStatus when they change, as PostgreSQL does.
REPORTED = (
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
    "standard_conforming_strings",
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "session_authorization",
)
DISPLAY_NAMES = {"datestyle": "DateStyle", "intervalstyle": "IntervalStyle", "timezone": "TimeZone"}

_UTF8_NAMES = {"utf8", "utf-8", "unicode"}
_FIXED = {"standard_conforming_strings": {"on"}}


@dataclass
class Settings:
    values: dict[str, str] = field(default_factory=lambda: dict(CLIENT_DEFAULTS))

    def set(self, name: str, value: str) -> None:
        key = name.lower()
        if key not in CLIENT_DEFAULTS:
            if key in SERVER_PARAMETERS:
                raise InvalidParameterValue(f'parameter "{name}" cannot be changed')
            raise FeatureNotAllowed(
                f'SET of "{name}" is not allowed by PrivacyLens',
                hint="Client settings (application_name, DateStyle, TimeZone, ...) and dp.epsilon, "
                "dp.confidence can be set.",
            )
        if key == "client_encoding" and value.lower() not in _UTF8_NAMES:
            raise InvalidParameterValue(f'client_encoding "{value}" is not supported', hint="Use UTF8.")
        if key in _FIXED and value.lower() not in _FIXED[key]:
            raise InvalidParameterValue(f"{name} can only be {', '.join(_FIXED[key])}")
        if key == "statement_timeout":
            value = str(parse_duration_ms(name, value))
        if key == "dp.epsilon" and value != "":
            _positive_number(name, value)
        if key == "dp.delta" and value != "" and not 0 < _positive_number(name, value) < 1e-3:
            raise InvalidParameterValue("dp.delta must be above 0 and below 0.001", hint="For example: 1e-7")
        if key == "dp.mechanism" and value != "":
            value = value.lower()
            if value not in ("laplace", "gaussian"):
                raise InvalidParameterValue("dp.mechanism is laplace or gaussian")
        if key == "dp.target_ci_width" and value != "":
            _positive_number(name, value)
        if key == "dp.confidence" and value != "":
            level = _positive_number(name, value)
            if not 0.5 <= level < 1:
                raise InvalidParameterValue(
                    "dp.confidence must be at least 0.5 and below 1",
                    hint="For example: SET dp.confidence = 0.9",
                )
        self.values[key] = "UTF8" if key == "client_encoding" else value

    def reset(self, name: str) -> None:
        key = name.lower()
        if key == "all":
            self.values = dict(CLIENT_DEFAULTS)
            return
        if key not in CLIENT_DEFAULTS:
            raise FeatureNotAllowed(f'RESET of "{name}" is not allowed by PrivacyLens')
        self.values[key] = CLIENT_DEFAULTS[key]

    def show(self, name: str, user: str) -> str:
        key = name.lower()
        if key in self.values:
            return self.values[key]
        if key in SERVER_PARAMETERS:
            return SERVER_PARAMETERS[key]
        if key in ("session_authorization", "current_user"):
            return user
        raise UndefinedObject(f'unrecognized configuration parameter "{name}"')

    def all(self, user: str) -> list[tuple[str, str]]:
        """Every setting SHOW knows, for SHOW ALL and pg_settings."""
        names = sorted({*self.values, *SERVER_PARAMETERS, "session_authorization"})
        return [(DISPLAY_NAMES.get(n, n), self.show(n, user)) for n in names]

    def epsilon(self) -> float | None:
        return float(self.values["dp.epsilon"]) if self.values["dp.epsilon"] else None

    def delta(self) -> float | None:
        return float(self.values["dp.delta"]) if self.values["dp.delta"] else None

    def mechanism(self) -> str | None:
        return self.values["dp.mechanism"] or None

    def target_ci_width(self) -> float | None:
        return float(self.values["dp.target_ci_width"]) if self.values["dp.target_ci_width"] else None

    def confidence(self) -> float | None:
        return float(self.values["dp.confidence"]) if self.values["dp.confidence"] else None


def _positive_number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise InvalidParameterValue(f"{name} must be a positive number, not {value!r}")
    return number


_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(name: str, value: str) -> int:
    """PostgreSQL's time setting syntax: a number of milliseconds, or a number with a unit.

    >>> [parse_duration_ms("t", v) for v in ("250", "5s", "1min", "0", "1.5s")]
    [250, 5000, 60000, 0, 1500]
    """
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*", value)
    if match is None:
        raise InvalidParameterValue(
            f'invalid value for parameter "{name}": "{value}"',
            hint='Give milliseconds, or a number with a unit: "5s", "2min".',
        )
    return round(float(match.group(1)) * _UNITS_MS[match.group(2) or "ms"])
