"""One client connection: the post-authentication message loop as an explicit state machine.

Phases (`Phase`): READY between messages; SKIPPING after an extended-protocol error, when every
message is discarded until Sync; CLOSED after Terminate or end of input. Every move is checked
(`Connection.move`). The transaction status (I/T/E, `proxy.session.Transaction`) is reported in
every ReadyForQuery. Output is buffered and written at ReadyForQuery, Flush, or when it grows large.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, ClassVar

from pgerrors import (
    DuplicateCursor,
    FeatureNotAllowed,
    InternalError,
    PgError,
    ProtocolViolation,
    QueryCanceled,
    StatementTooComplex,
    SyntaxErrorPg,
    UndefinedCursor,
    UndefinedPreparedStatement,
)
from proxy import metrics
from proxy.gateway import Gateway
from proxy.planning import plan_off_loop
from proxy.results import Description, Result
from proxy.session import SessionState
from proxy.session_settings import CLIENT_DEFAULTS, DISPLAY_NAMES, REPORTED, SERVER_PARAMETERS, Settings
from proxy.statement_cache import known, parsed
from proxy.wire import codec
from proxy.wire.types import declared_type, decode_parameter, encoder, oid_of, size_of
from rewriter.parse import Kind, Statement

log = logging.getLogger("privacylens.connection")

MAX_MESSAGE_LENGTH = 16 * 1024 * 1024
MAX_COPY_BYTES = 512 * 1024 * 1024  # one COPY is stored all or nothing, so it is held whole
FLUSH_AT = 256 * 1024


class Phase(Enum):
    READY = "ready"
    SKIPPING = "skipping until Sync"
    CLOSED = "closed"


_PHASE_MOVES = {
    (Phase.READY, Phase.SKIPPING),  # an error in an extended-protocol message
    (Phase.SKIPPING, Phase.READY),  # Sync
    (Phase.READY, Phase.CLOSED),  # Terminate, end of input
    (Phase.SKIPPING, Phase.CLOSED),
}


@dataclass
class Prepared:
    statement: Statement | None  # None for an empty query string
    declared_oids: tuple[int, ...]
    declared: tuple[str | None, ...]
    description: Description


@dataclass
class Portal:
    prepared: Prepared
    params: list[Any]
    result_formats: tuple[int, ...]
    result: Result | None = None
    sent: int = 0
    cursor: bool = False  # made by DECLARE (an SQL-level cursor), not by Bind
    holdable: bool = False  # DECLARE ... WITH HOLD: survives COMMIT / ROLLBACK


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    gateway: Gateway
    state: SessionState
    out: bytearray = field(default_factory=bytearray)
    phase: Phase = Phase.READY
    prepared: dict[str, Prepared] = field(default_factory=dict)
    portals: dict[str, Portal] = field(default_factory=dict)

    # ---- start and loop -------------------------------------------------------------------------

    def move(self, to: Phase) -> None:
        if to is not self.phase and (self.phase, to) not in _PHASE_MOVES:
            raise AssertionError(f"connection cannot move from {self.phase.name} to {to.name}")
        self.phase = to

    def greet(self, startup: dict[str, str], secret: int) -> None:
        settings = self.state.settings
        for key, value in startup.items():
            if key.lower() in CLIENT_DEFAULTS and not key.lower().startswith("dp."):
                try:
                    settings.set(key, value)
                except PgError:
                    pass  # an unsupported start-up value keeps our default, as the status below says
        for name in REPORTED:
            value = settings.values.get(name) or SERVER_PARAMETERS.get(name)
            if name == "session_authorization":
                value = self.state.user
            if value is not None:
                self.out += codec.parameter_status(DISPLAY_NAMES.get(name, name), value)
        self.out += codec.backend_key_data(self.state.pid, secret)
        self.out += codec.ready_for_query(self.state.transaction.status.value)

    async def serve(self) -> None:
        await self.flush()
        while self.phase is not Phase.CLOSED:
            header, body = await self._read_message()
            if not header:
                self.move(Phase.CLOSED)
                return
            if header == b"X":
                self.move(Phase.CLOSED)
                return
            await self.handle(header, body)
            if len(self.out) > FLUSH_AT:
                await self.flush()

    async def _read_message(self) -> tuple[bytes, bytes]:
        """(type byte, body); (b"", b"") at the end of input."""
        header = await self.reader.read(1)
        if not header:
            return b"", b""
        length = struct.unpack("!i", await self.reader.readexactly(4))[0]
        if not 4 <= length <= MAX_MESSAGE_LENGTH:
            raise ProtocolViolation(f"invalid message length {length}")
        return header, await self.reader.readexactly(length - 4)

    async def copy_in(self, statement: Statement) -> Result:
        """COPY ... FROM STDIN: checked before any data is asked for, the rows read whole (CopyData
        until CopyDone), then stored all or nothing by the gateway."""
        assert statement.copy is not None
        self.state.transaction.check_may_run(statement.kind)
        await plan_off_loop(self.gateway.describe, statement, self.state)
        self.out += codec.copy_in_response(len(statement.copy.columns))
        await self.flush()
        data = bytearray()
        too_big = False
        while True:
            kind, body = await self._read_message()
            if kind == b"d":
                if len(data) + len(body) > MAX_COPY_BYTES:
                    too_big = True
                else:
                    data += body
            elif kind == b"c":
                break
            elif kind == b"f":
                raise QueryCanceled(
                    f"COPY from stdin failed: {body.rstrip(bytes(1)).decode(errors='replace')}"
                )
            elif kind in (b"H", b"S"):
                continue  # ignored during copy-in, as PostgreSQL does
            elif not kind:
                self.move(Phase.CLOSED)
                raise ProtocolViolation("the client went away during COPY; nothing was stored")
            else:
                raise ProtocolViolation(f"unexpected message type {kind!r} during COPY")
        if too_big:
            raise StatementTooComplex(
                f"this COPY sends more than {MAX_COPY_BYTES // 2**20} MiB; nothing of it was stored",
                hint="Split the events into several COPY statements (each is stored all or nothing).",
            )
        return await self.gateway.copy_in(statement, self.state, bytes(data))

    async def flush(self) -> None:
        if self.out:
            self.writer.write(bytes(self.out))
            self.out.clear()
        await self.writer.drain()

    async def handle(self, kind: bytes, body: bytes) -> None:
        if kind == b"Q":
            await self.simple_query(body)
            return
        handler = self._extended.get(kind)
        if handler is None:
            raise ProtocolViolation(f"invalid frontend message type {kind!r}")
        if kind == b"S":
            self.sync()
            await self.flush()
            return
        if kind == b"H":
            await self.flush()
            return
        if self.phase is Phase.SKIPPING:
            return
        try:
            await handler(self, body)
        except PgError as error:
            await self.gateway.audit_refusal(self.state, error)
            self.error(error)
            self.move(Phase.SKIPPING)
        except Exception:
            log.exception("internal error in extended protocol")
            self.error(InternalError("internal error"))
            self.move(Phase.SKIPPING)

    # ---- simple query ---------------------------------------------------------------------------

    async def simple_query(self, body: bytes) -> None:
        try:
            text = codec.parse_query(body)
            statements = known(text)  # a repeated text skips the hop to a planning thread
            if statements is None:
                statements = await plan_off_loop(parsed, text)
            if not statements:
                self.out += codec.empty_query_response()
            else:
                if len(statements) > 1:
                    await plan_off_loop(self._check_all, statements)
                for statement in statements:
                    if statement.kind is Kind.COPY_IN:
                        result = await self.copy_in(statement)
                    else:
                        result = await self.run_statement(statement)
                    self.send_result(result, None, formats=())
        except PgError as error:
            await self.gateway.audit_refusal(self.state, error, _text(body))
            self.error(error)
        except Exception:
            log.exception("internal error in simple query")
            self.error(InternalError("internal error"))
        self.out += codec.ready_for_query(self.state.transaction.status.value)
        await self.flush()

    def _check_all(self, statements: list[Statement]) -> None:
        """Refuse the whole string before running any of it, applying its SETs to a scratch copy."""
        if len(statements) == 1:
            return
        scratch = replace(self.state, settings=Settings(dict(self.state.settings.values)))
        for statement in statements:
            self.gateway.check(statement, scratch)

    # ---- statements that act on this connection's portals --------------------------------------

    async def run_statement(
        self, statement: Statement, params: list[Any] | None = None, declared: tuple[str | None, ...] = ()
    ) -> Result:
        kind = statement.kind
        if kind is Kind.DECLARE and statement.inner is not None:
            if statement.cursor in self.portals:
                raise DuplicateCursor(f'cursor "{statement.cursor}" already exists')
            result = await self.gateway.execute(statement.inner, self.state, params or [], declared)
            if result.columns is None:
                raise FeatureNotAllowed("a cursor can only be declared for a query that returns rows")
            description = Description((), result.columns)
            prepared = Prepared(statement.inner, (), declared, description)
            self.portals[statement.cursor] = Portal(
                prepared, params or [], (), result, 0, True, statement.holdable
            )
            return Result(None, [], "DECLARE CURSOR", result.notices)
        if kind in (Kind.FETCH, Kind.MOVE):
            portal = self._cursor(statement.cursor)
            assert portal.result is not None
            end = (
                len(portal.result.rows)
                if statement.count is None
                else min(len(portal.result.rows), portal.sent + statement.count)
            )
            rows = portal.result.rows[portal.sent : end]
            portal.sent = end
            if kind is Kind.MOVE:
                return Result(None, [], f"MOVE {len(rows)}")
            return Result(portal.result.columns, rows, f"FETCH {len(rows)}")
        if kind is Kind.CLOSE:
            if statement.cursor:
                self._cursor(statement.cursor)
                del self.portals[statement.cursor]
            else:
                for name in [n for n, p in self.portals.items() if p.cursor]:
                    del self.portals[name]
            return Result(None, [], "CLOSE CURSOR")
        reported = self._reported()
        result = await self.gateway.execute(statement, self.state, params or [], declared)
        for name, value in self._reported().items():  # PostgreSQL reports changed settings to the client
            if reported.get(name) != value:
                self.out += codec.parameter_status(DISPLAY_NAMES.get(name, name), value)
        if kind in (Kind.COMMIT, Kind.ROLLBACK):  # the transaction's cursors end with it
            for name in [n for n, p in self.portals.items() if p.cursor and not p.holdable]:
                del self.portals[name]
        return result

    def _reported(self) -> dict[str, str]:
        return {
            name: self.state.settings.values[name] for name in REPORTED if name in self.state.settings.values
        }

    def _cursor(self, name: str) -> Portal:
        portal = self.portals.get(name)
        if portal is None or not portal.cursor:
            raise UndefinedCursor(f'cursor "{name}" does not exist')
        return portal

    def _columns(self, prepared: Prepared) -> list[tuple[str, str]] | None:
        """Result columns of a prepared statement; a FETCH has its cursor's columns."""
        statement = prepared.statement
        if statement is not None and statement.kind is Kind.FETCH:
            portal = self.portals.get(statement.cursor)
            return portal.result.columns if portal is not None and portal.result is not None else None
        return prepared.description.columns

    # ---- extended query -------------------------------------------------------------------------

    async def parse(self, body: bytes) -> None:
        message = codec.parse_parse(body)
        if message.name and message.name in self.prepared:
            raise PgError(f'prepared statement "{message.name}" already exists')
        statements = known(message.query)
        if statements is None:
            statements = await plan_off_loop(parsed, message.query)
        if len(statements) > 1:
            raise SyntaxErrorPg("cannot insert multiple commands into a prepared statement")
        statement = statements[0] if statements else None
        declared = tuple(declared_type(oid) for oid in message.parameter_oids)
        description = (
            await plan_off_loop(self.gateway.describe, statement, self.state, declared)
            if statement
            else Description((), None)
        )
        self.prepared[message.name] = Prepared(statement, message.parameter_oids, declared, description)
        self.out += codec.parse_complete()

    async def bind(self, body: bytes) -> None:
        message = codec.parse_bind(body)
        prepared = self.prepared.get(message.statement)
        if prepared is None:
            raise UndefinedPreparedStatement(f'prepared statement "{message.statement}" does not exist')
        types = prepared.description.parameter_types
        if len(message.values) != len(types):
            raise ProtocolViolation(
                f"bind message supplies {len(message.values)} parameters, but prepared statement "
                f'"{message.statement}" requires {len(types)}'
            )
        formats = _expand(message.parameter_formats, len(types))
        params = [
            decode_parameter(pg_type, self._declared_oid(prepared, i, pg_type), formats[i], raw)
            for i, (pg_type, raw) in enumerate(zip(types, message.values, strict=True))
        ]
        columns = self._columns(prepared) or []
        result_formats = _expand(message.result_formats, len(columns))
        for (_, pg_type), fmt in zip(columns, result_formats, strict=True):
            encoder(pg_type, fmt)  # refuse an unsupported binary format now, not mid-result
        self.portals[message.portal] = Portal(prepared, params, result_formats)
        self.out += codec.bind_complete()

    async def describe(self, body: bytes) -> None:
        kind, name = codec.parse_target(body)
        if kind == "S":
            prepared = self.prepared.get(name)
            if prepared is None:
                raise UndefinedPreparedStatement(f'prepared statement "{name}" does not exist')
            types = prepared.description.parameter_types
            self.out += codec.parameter_description(
                [self._declared_oid(prepared, i, t) for i, t in enumerate(types)]
            )
            self._describe_rows(self._columns(prepared), ())
            return
        portal = self.portals.get(name)
        if portal is None:
            raise UndefinedCursor(f'portal "{name}" does not exist')
        self._describe_rows(self._columns(portal.prepared), portal.result_formats)

    async def execute(self, body: bytes) -> None:
        name, max_rows = codec.parse_execute(body)
        portal = self.portals.get(name)
        if portal is None:
            raise UndefinedCursor(f'portal "{name}" does not exist')
        statement = portal.prepared.statement
        if statement is None:
            self.out += codec.empty_query_response()
            return
        if portal.result is None and statement.kind is Kind.COPY_IN:
            self.send_result(await self.copy_in(statement), None, formats=())
            return
        if portal.result is None:
            portal.result = await self.run_statement(statement, portal.params, portal.prepared.declared)
            for notice in portal.result.notices:
                self.out += codec.notice_response(notice)
        self.send_result(portal.result, portal, portal.result_formats, max_rows=max_rows, describe=False)

    async def close(self, body: bytes) -> None:
        kind, name = codec.parse_target(body)
        (self.prepared if kind == "S" else self.portals).pop(name, None)
        self.out += codec.close_complete()

    def sync(self) -> None:
        self.move(Phase.READY)
        self.portals.pop("", None)
        self.out += codec.ready_for_query(self.state.transaction.status.value)

    _extended: ClassVar[dict[bytes, Callable[..., Any]]] = {
        b"P": parse,
        b"B": bind,
        b"D": describe,
        b"E": execute,
        b"C": close,
        b"S": sync,
        b"H": flush,
    }

    # ---- output ---------------------------------------------------------------------------------

    def send_result(
        self,
        result: Result,
        portal: Portal | None,
        formats: tuple[int, ...],
        max_rows: int = 0,
        describe: bool = True,
    ) -> None:
        if portal is None:
            for notice in result.notices:
                self.out += codec.notice_response(notice)
        if result.columns is None:
            self.out += codec.command_complete(result.tag)
            return
        started = time.perf_counter()
        formats = formats or (0,) * len(result.columns)
        if describe:
            self._describe_rows(result.columns, formats)
        start = portal.sent if portal else 0
        end = len(result.rows) if max_rows <= 0 else min(len(result.rows), start + max_rows)
        encoders = [encoder(pg_type, fmt) for (_, pg_type), fmt in zip(result.columns, formats, strict=True)]
        self.out += b"".join(
            codec.data_row([enc(v) for enc, v in zip(encoders, row, strict=True)])
            for row in result.rows[start:end]
        )
        metrics.PHASE_SECONDS.labels("send").observe(time.perf_counter() - started)
        if portal is not None:
            portal.sent = end
            if end < len(result.rows):
                self.out += codec.portal_suspended()
                return
        tag = result.tag if portal is None or not result.tag.startswith("SELECT") else f"SELECT {end - start}"
        self.out += codec.command_complete(tag)

    def _describe_rows(self, columns: list[tuple[str, str]] | None, formats: tuple[int, ...]) -> None:
        if columns is None:
            self.out += codec.no_data()
            return
        formats = formats or (0,) * len(columns)
        self.out += codec.row_description(
            [
                codec.FieldDescription(name, oid_of(t), size_of(t), fmt)
                for (name, t), fmt in zip(columns, formats, strict=True)
            ]
        )

    def error(self, error: PgError) -> None:
        self.state.transaction.fail()
        self.out += codec.error_response(error)

    @staticmethod
    def _declared_oid(prepared: Prepared, index: int, pg_type: str) -> int:
        if index < len(prepared.declared_oids) and prepared.declared_oids[index]:
            return prepared.declared_oids[index]
        return oid_of(pg_type)


def _expand(formats: tuple[int, ...], count: int) -> tuple[int, ...]:
    if not formats:
        return (0,) * count
    if len(formats) not in (1, count):
        raise ProtocolViolation(f"expected {count} format codes, got {len(formats)}")
    for fmt in formats:
        if fmt not in (0, 1):
            raise ProtocolViolation(f"invalid format code {fmt}")
    return formats * count if len(formats) == 1 else formats


def _text(body: bytes) -> str:
    """A Query message's SQL for the audit log, whatever its encoding."""
    return body.rstrip(b"\x00").decode("utf-8", errors="replace")
