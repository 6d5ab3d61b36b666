"""PostgreSQL type OIDs and value codecs (text and binary) for results and bound parameters."""

from __future__ import annotations

import datetime as dt
import math
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from pgerrors import FeatureNotAllowed, InvalidTextRepresentation

# name: (oid, typlen)
TYPES: dict[str, tuple[int, int]] = {
    "bool": (16, 1),
    "bytea": (17, -1),
    "int8": (20, 8),
    "int2": (21, 2),
    "int4": (23, 4),
    "text": (25, -1),
    "oid": (26, 4),
    "float4": (700, 4),
    "float8": (701, 8),
    "unknown": (705, -2),
    "bpchar": (1042, -1),
    "varchar": (1043, -1),
    "date": (1082, 4),
    "time": (1083, 8),
    "timestamp": (1114, 8),
    "timestamptz": (1184, 8),
    "numeric": (1700, -1),
    "uuid": (2950, 16),
    "interval": (1186, 16),
    "_bool": (1000, -1),
    "_int2": (1005, -1),
    "_int4": (1007, -1),
    "_text": (1009, -1),
    "_int8": (1016, -1),
    "_float4": (1021, -1),
    "_float8": (1022, -1),
    "_date": (1182, -1),
    "_numeric": (1231, -1),
}
OID_TO_NAME = {oid: name for name, (oid, _) in TYPES.items()}

# Declared parameter OIDs → the PgType the rewriter works with.
PARAMETER_TYPE = {
    "bool": "bool", "int2": "int4", "int4": "int4", "int8": "int8", "oid": "int8",
    "float4": "float8", "float8": "float8", "numeric": "numeric", "text": "text", "varchar": "text",
    "bpchar": "text", "date": "date", "timestamp": "timestamp", "timestamptz": "timestamp",
}  # fmt: skip

PG_EPOCH = dt.date(2000, 1, 1)
PG_EPOCH_TS = dt.datetime(2000, 1, 1)
PG_EPOCH_TZ = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def oid_of(pg_type: str) -> int:
    return TYPES[pg_type][0]


def size_of(pg_type: str) -> int:
    return TYPES[pg_type][1]


def declared_type(oid: int) -> str | None:
    """The rewriter type for a parameter OID the client declared; None when 0 (unspecified)."""
    if oid == 0:
        return None
    name = OID_TO_NAME.get(oid)
    if name == "unknown":
        return None
    if name is None or name not in PARAMETER_TYPE:
        raise FeatureNotAllowed(f"parameters of type OID {oid} are not supported")
    return PARAMETER_TYPE[name]


# ---- results ------------------------------------------------------------------------------------


def _float_text(value: float) -> str:
    """PostgreSQL's float8 output: shortest round-trip digits, exponent form below 1e-4 or from 1e15.

    >>> [_float_text(v) for v in (-1.0, 0.5, 103400.0, 1e15, 1.5e-05, 123456789012345.0, 0.0)]
    ['-1', '0.5', '103400', '1e+15', '1.5e-05', '123456789012345', '0']
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits))
    decimal_exponent = len(digits) + exponent - 1
    prefix = "-" if sign else ""
    if decimal_exponent < -4 or decimal_exponent >= 15:
        fraction = f".{mantissa[1:]}" if len(mantissa) > 1 else ""
        exponent_sign = "+" if decimal_exponent >= 0 else "-"
        return f"{prefix}{mantissa[0]}{fraction}e{exponent_sign}{abs(decimal_exponent):02d}"
    if exponent >= 0:
        return prefix + mantissa + "0" * exponent
    point = len(mantissa) + exponent
    if point > 0:
        return f"{prefix}{mantissa[:point]}.{mantissa[point:]}"
    return f"{prefix}0.{'0' * -point}{mantissa}"


def _array_element(value: Any) -> str:
    """One element of a PostgreSQL array literal, quoted when it must be."""
    if value is None:
        return "NULL"
    text = (encode_text(value) or b"").decode("utf-8")
    if text == "" or text.upper() == "NULL" or any(c in text for c in ' ,{}"\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def encode_text(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ("{" + ",".join(_array_element(v) for v in value) + "}").encode("utf-8")
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, float):
        return _float_text(value).encode()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ").encode()
    if isinstance(value, (int, Decimal, dt.date, dt.time)):
        return str(value).encode()
    return str(value).encode("utf-8")


def _numeric_binary(value: Any) -> bytes:
    """PostgreSQL's binary numeric: base-10000 digits with weight, sign and display scale."""
    number = (
        value
        if isinstance(value, Decimal)
        else Decimal(repr(float(value)) if isinstance(value, float) else value)
    )
    if number.is_nan():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    if number.is_infinite():
        return struct.pack("!hhHh", 0, 0, 0xD000 if number > 0 else 0xF000, 0)
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    dscale = max(-exponent, 0)
    text = ("".join(map(str, digits)) + "0" * max(exponent, 0)).rjust(dscale + 1, "0")
    integer, fraction = (text[: len(text) - dscale] or "0"), text[len(text) - dscale :]
    integer = integer.lstrip("0")
    integer = "0" * (-len(integer) % 4) + integer
    fraction = fraction + "0" * (-len(fraction) % 4)
    groups = [int(integer[i : i + 4]) for i in range(0, len(integer), 4)]
    weight = len(groups) - 1
    groups += [int(fraction[i : i + 4]) for i in range(0, len(fraction), 4)]
    while groups and groups[0] == 0:  # leading zero groups lower the weight
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    header = struct.pack("!hhHh", len(groups), weight, 0x4000 if sign else 0, dscale)
    return header + b"".join(struct.pack("!H", g) for g in groups)


def _interval_binary(value: dt.timedelta) -> bytes:
    micros = value // dt.timedelta(microseconds=1)
    days, micros = divmod(micros, 86_400_000_000)
    return struct.pack("!qii", micros, days, 0)


def _timestamptz_binary(value: dt.datetime) -> bytes:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return struct.pack("!q", (value - PG_EPOCH_TZ) // dt.timedelta(microseconds=1))


_BINARY: dict[str, Callable[[Any], bytes]] = {
    "bool": lambda v: b"\x01" if v else b"\x00",
    "int2": lambda v: struct.pack("!h", v),
    "int4": lambda v: struct.pack("!i", v),
    "int8": lambda v: struct.pack("!q", v),
    "oid": lambda v: struct.pack("!I", v),
    "float4": lambda v: struct.pack("!f", v),
    "float8": lambda v: struct.pack("!d", v),
    "numeric": _numeric_binary,
    "text": lambda v: str(v).encode("utf-8"),
    "varchar": lambda v: str(v).encode("utf-8"),
    "name": lambda v: str(v).encode("utf-8"),
    "bytea": bytes,
    "uuid": lambda v: v.bytes if hasattr(v, "bytes") else bytes.fromhex(str(v).replace("-", "")),
    "date": lambda v: struct.pack("!i", (v - PG_EPOCH).days),
    "timestamp": lambda v: struct.pack("!q", (v - PG_EPOCH_TS) // dt.timedelta(microseconds=1)),
    "timestamptz": _timestamptz_binary,
    "interval": _interval_binary,
}


def _array_binary(element_type: str) -> Callable[[Any], bytes]:
    element = _BINARY[element_type]
    element_oid = TYPES[element_type][0]

    def encode(values: Any) -> bytes:
        items = list(values)
        has_null = any(v is None for v in items)
        if not items:
            return struct.pack("!iii", 0, 0, element_oid)
        out = [struct.pack("!iiiii", 1, int(has_null), element_oid, len(items), 1)]
        for v in items:
            if v is None:
                out.append(struct.pack("!i", -1))
            else:
                data = element(v)
                out.append(struct.pack("!i", len(data)) + data)
        return b"".join(out)

    return encode


def encoder(pg_type: str, fmt: int) -> Callable[[Any], bytes | None]:
    if fmt == 0:
        return encode_text
    binary = _BINARY.get(pg_type)
    if binary is None and pg_type.startswith("_") and pg_type[1:] in _BINARY:
        binary = _array_binary(pg_type[1:])
    if binary is None:
        raise FeatureNotAllowed(
            f"binary format for type {pg_type} is not supported yet",
            hint="Request text format for this column.",
        )
    return lambda v: None if v is None else binary(v)


# ---- parameters ---------------------------------------------------------------------------------

_BOOL_TEXT = {
    "t": True,
    "true": True,
    "y": True,
    "yes": True,
    "on": True,
    "1": True,
    "f": False,
    "false": False,
    "n": False,
    "no": False,
    "off": False,
    "0": False,
}


def _decode_text(pg_type: str, raw: bytes) -> Any:
    text = raw.decode("utf-8")
    if pg_type in ("int4", "int8"):
        return int(text.strip())
    if pg_type == "float8":
        return float(text)
    if pg_type == "numeric":
        return float(Decimal(text))
    if pg_type == "bool":
        return _BOOL_TEXT[text.strip().lower()]
    if pg_type == "date":
        return dt.date.fromisoformat(text.strip())
    if pg_type == "timestamp":
        return dt.datetime.fromisoformat(text.strip())
    return text


_BINARY_PARAMETERS: dict[int, Callable[[bytes], Any]] = {
    16: lambda b: b == b"\x01",
    20: lambda b: struct.unpack("!q", b)[0],
    21: lambda b: struct.unpack("!h", b)[0],
    23: lambda b: struct.unpack("!i", b)[0],
    700: lambda b: struct.unpack("!f", b)[0],
    701: lambda b: struct.unpack("!d", b)[0],
    25: lambda b: b.decode("utf-8"),
    1043: lambda b: b.decode("utf-8"),
    1082: lambda b: PG_EPOCH + dt.timedelta(days=struct.unpack("!i", b)[0]),
    1114: lambda b: PG_EPOCH_TS + dt.timedelta(microseconds=struct.unpack("!q", b)[0]),
    1184: lambda b: (PG_EPOCH_TZ + dt.timedelta(microseconds=struct.unpack("!q", b)[0])).replace(tzinfo=None),
    1700: lambda b: float(_numeric_from_binary(b)),
    1042: lambda b: b.decode("utf-8"),
    2950: lambda b: str(uuid.UUID(bytes=b)),
}


def _numeric_from_binary(data: bytes) -> Decimal:
    ndigits, weight, sign, dscale = struct.unpack("!hhHh", data[:8])
    if sign == 0xC000:
        return Decimal("NaN")
    groups = struct.unpack(f"!{ndigits}H", data[8 : 8 + 2 * ndigits])
    text = "".join(f"{g:04d}" for g in groups) or "0"
    value = Decimal(text).scaleb(4 * (weight - ndigits + 1))
    return -value if sign == 0x4000 else value


def decode_parameter(pg_type: str, declared_oid: int, fmt: int, raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        if fmt == 0:
            return _decode_text(pg_type, raw)
        decode = _BINARY_PARAMETERS.get(declared_oid)
        if decode is None:
            raise FeatureNotAllowed(f"binary parameters of type OID {declared_oid} are not supported")
        return decode(raw)
    except (ValueError, KeyError, InvalidOperation, UnicodeDecodeError, struct.error) as err:
        raise InvalidTextRepresentation(
            f"invalid input syntax for type {pg_type}: {raw[:40]!r}",
        ) from err
