"""Binary and text codecs against independent decoders of PostgreSQL's formats."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.wire.types import decode_parameter, encode_text, encoder


def decode_numeric(data: bytes) -> Decimal:
    ndigits, weight, sign, dscale = struct.unpack("!hhHh", data[:8])
    groups = struct.unpack(f"!{ndigits}H", data[8:])
    with localcontext() as ctx:
        ctx.prec = 200
        value = sum((Decimal(g) * Decimal(10000) ** (weight - i) for i, g in enumerate(groups)), Decimal(0))
        return (-value if sign == 0x4000 else value).quantize(Decimal(1).scaleb(-dscale))


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None, min_value=-(10**20), max_value=10**20))
def test_numeric_binary_round_trips(value: Decimal) -> None:
    encoded = encoder("numeric", 1)(value)
    assert encoded is not None
    assert decode_numeric(encoded) == value


@pytest.mark.parametrize("value", ["0.0001", "1E+10", "-12345.678", "0.00", "100"])
def test_numeric_binary_examples(value: str) -> None:
    assert decode_numeric(encoder("numeric", 1)(Decimal(value))) == Decimal(value)  # type: ignore[arg-type]


def test_array_text_and_binary() -> None:
    assert encode_text(["a", "b c", None, "", 'x"y', "NULL"]) == b'{a,"b c",NULL,"","x\\"y","NULL"}'
    binary = encoder("_int4", 1)([1, None, 3])
    assert binary is not None
    ndim, has_null, oid, size, lower = struct.unpack("!iiiii", binary[:20])
    assert (ndim, has_null, oid, size, lower) == (1, 1, 23, 3, 1)


def test_temporal_binary() -> None:
    assert encoder("date", 1)(dt.date(2000, 1, 2)) == struct.pack("!i", 1)
    assert encoder("timestamp", 1)(dt.datetime(2000, 1, 1, 0, 0, 1)) == struct.pack("!q", 1_000_000)
    assert encoder("interval", 1)(dt.timedelta(days=2, seconds=3)) == struct.pack("!qii", 3_000_000, 2, 0)


def test_parameters_decode_or_raise_22p02() -> None:
    assert decode_parameter("int8", 20, 0, b"42") == 42
    assert decode_parameter("date", 1082, 0, b"2020-01-02") == dt.date(2020, 1, 2)
    assert decode_parameter("float8", 701, 1, struct.pack("!d", 2.5)) == 2.5
    with pytest.raises(Exception) as raised:
        decode_parameter("int4", 23, 0, b"forty")
    assert getattr(raised.value, "sqlstate", None) == "22P02"
