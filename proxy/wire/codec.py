"""Framing and message codecs for the PostgreSQL v3 protocol (server side). No sockets here.

Backend messages are built as bytes by small functions; frontend messages are parsed from a body by
a `Reader` that raises ProtocolViolation on truncated or malformed input, never IndexError.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pgerrors import CharacterNotInRepertoire, PgError, ProtocolViolation

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3_0 = 196608

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + _I32.pack(len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode("utf-8") + b"\x00"


# ---- backend messages -------------------------------------------------------------------------


def authentication(code: int, data: bytes = b"") -> bytes:
    return message(b"R", _I32.pack(code) + data)


def authentication_ok() -> bytes:
    return authentication(0)


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstr(name) + cstr(value))


def backend_key_data(pid: int, secret: int) -> bytes:
    return message(b"K", struct.pack("!ii", pid, secret))


def ready_for_query(status: str) -> bytes:
    return message(b"Z", status.encode("ascii"))


def negotiate_protocol_version(newest_minor: int, unsupported: Sequence[str]) -> bytes:
    body = struct.pack("!ii", newest_minor, len(unsupported)) + b"".join(cstr(o) for o in unsupported)
    return message(b"v", body)


@dataclass(frozen=True)
class FieldDescription:
    name: str
    type_oid: int
    type_size: int
    format: int = 0
    type_modifier: int = -1
    table_oid: int = 0
    column_number: int = 0


def row_description(fields: Sequence[FieldDescription]) -> bytes:
    parts = [_I16.pack(len(fields))]
    for f in fields:
        parts.append(cstr(f.name))
        parts.append(
            struct.pack(
                "!ihihih", f.table_oid, f.column_number, f.type_oid, f.type_size, f.type_modifier, f.format
            )
        )
    return message(b"T", b"".join(parts))


def data_row(cells: Sequence[bytes | None]) -> bytes:
    parts = [_I16.pack(len(cells))]
    for cell in cells:
        if cell is None:
            parts.append(_I32.pack(-1))
        else:
            parts.append(_I32.pack(len(cell)))
            parts.append(cell)
    return message(b"D", b"".join(parts))


def command_complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


def copy_in_response(columns: int) -> bytes:
    """CopyInResponse: text format overall and for each column."""
    return message(b"G", struct.pack("!bh", 0, columns) + struct.pack(f"!{columns}h", *([0] * columns)))


def empty_query_response() -> bytes:
    return message(b"I")


def parse_complete() -> bytes:
    return message(b"1")


def bind_complete() -> bytes:
    return message(b"2")


def close_complete() -> bytes:
    return message(b"3")


def no_data() -> bytes:
    return message(b"n")


def portal_suspended() -> bytes:
    return message(b"s")


def parameter_description(oids: Sequence[int]) -> bytes:
    return message(b"t", _I16.pack(len(oids)) + b"".join(_I32.pack(o) for o in oids))


def _fields(pairs: Iterable[tuple[bytes, str | None]]) -> bytes:
    return b"".join(code + cstr(value) for code, value in pairs if value is not None) + b"\x00"


def error_response(error: PgError) -> bytes:
    return message(b"E", _fields(_error_fields(error, error.severity)))


def notice_response(text: str, hint: str | None = None) -> bytes:
    return message(
        b"N", _fields([(b"S", "NOTICE"), (b"V", "NOTICE"), (b"C", "00000"), (b"M", text), (b"H", hint)])
    )


def _error_fields(error: PgError, severity: str) -> list[tuple[bytes, str | None]]:
    return [
        (b"S", severity),
        (b"V", severity),
        (b"C", error.sqlstate),
        (b"M", error.message),
        (b"D", error.detail),
        (b"H", error.hint),
        (b"P", str(error.position) if error.position else None),
    ]


# ---- frontend messages ------------------------------------------------------------------------


class Reader:
    """Reads fields from one message body; any overrun is a protocol violation."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.body):
            raise ProtocolViolation("invalid message format")
        chunk = self.body[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def int32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def byte(self) -> bytes:
        return self._take(1)

    def bytes_(self, n: int) -> bytes:
        return self._take(n)

    def cstring(self) -> str:
        end = self.body.find(b"\x00", self.pos)
        if end < 0:
            raise ProtocolViolation("invalid message format: unterminated string")
        raw = self.body[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CharacterNotInRepertoire('invalid byte sequence for encoding "UTF8"') from err

    def rest(self) -> bytes:
        return self._take(len(self.body) - self.pos)


def parse_startup_parameters(body: bytes) -> dict[str, str]:
    reader = Reader(body)
    params: dict[str, str] = {}
    while reader.pos < len(body):
        key = reader.cstring()
        if key == "":
            break
        params[key] = reader.cstring()
    return params


@dataclass(frozen=True)
class Parse:
    name: str
    query: str
    parameter_oids: tuple[int, ...]


@dataclass(frozen=True)
class Bind:
    portal: str
    statement: str
    parameter_formats: tuple[int, ...]
    values: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


def parse_parse(body: bytes) -> Parse:
    r = Reader(body)
    name, query = r.cstring(), r.cstring()
    count = r.int16()
    return Parse(name, query, tuple(r.int32() for _ in range(max(count, 0))))


def parse_bind(body: bytes) -> Bind:
    r = Reader(body)
    portal, statement = r.cstring(), r.cstring()
    formats = tuple(r.int16() for _ in range(max(r.int16(), 0)))
    values: list[bytes | None] = []
    for _ in range(max(r.int16(), 0)):
        length = r.int32()
        values.append(None if length == -1 else r.bytes_(length))
    result_formats = tuple(r.int16() for _ in range(max(r.int16(), 0)))
    return Bind(portal, statement, formats, tuple(values), result_formats)


def parse_target(body: bytes) -> tuple[str, str]:
    """Describe and Close: ('S' or 'P', name)."""
    r = Reader(body)
    kind = r.byte().decode("latin-1")
    if kind not in ("S", "P"):
        raise ProtocolViolation(f"invalid target kind {kind!r}")
    return kind, r.cstring()


def parse_execute(body: bytes) -> tuple[str, int]:
    r = Reader(body)
    return r.cstring(), r.int32()


def parse_query(body: bytes) -> str:
    return Reader(body).cstring()
