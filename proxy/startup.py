"""Connection start-up: SSLRequest/GSSENCRequest, CancelRequest, StartupMessage and SCRAM-SHA-256.

`negotiate` returns the start-up parameters of an authenticated client, or None when the
connection was a CancelRequest (answered and to be closed). It raises PgError (FATAL) otherwise:
AuthenticationFailed (28P01) for a wrong password or token, whatever the user name. `admit` is
called with the user name before any password is asked for (the login throttle).
With a TLS context, an SSLRequest is answered `S` and the stream upgraded in place.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pgerrors import AuthenticationFailed, InvalidAuthorization, ProtocolViolation
from proxy.auth import Verifiers
from proxy.scram import MECHANISM, ScramError, ScramServer, password_matches
from proxy.tokens import TokenRejected, TokenVerifier, looks_like_token
from proxy.wire import codec

MAX_STARTUP_LENGTH = 10_000
log = logging.getLogger("privacylens.startup")


@dataclass(frozen=True)
class Transport:
    tls: ssl.SSLContext | None  # None: SSLRequests are answered N
    tls_required: bool
    tokens: TokenVerifier | None = None  # JWT login, offered inside TLS only


@dataclass(frozen=True)
class Startup:
    parameters: dict[str, str]
    tls: bool  # the session runs over TLS
    role: str


async def negotiate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    verifiers: Verifiers,
    on_cancel: Callable[[int, int], None],
    transport: Transport,
    admit: Callable[[str], None] = lambda user: None,
) -> Startup | None:
    tls_active = False
    while True:
        length = struct.unpack("!i", await reader.readexactly(4))[0]
        if not 8 <= length <= MAX_STARTUP_LENGTH:
            raise ProtocolViolation("invalid length of startup packet")
        body = await reader.readexactly(length - 4)
        code = struct.unpack("!i", body[:4])[0]
        if code == codec.SSL_REQUEST and transport.tls is not None and not tls_active:
            if reader._buffer:  # noqa: SLF001 - bytes sent before the handshake would bypass TLS
                raise ProtocolViolation("received unencrypted data after SSL request")
            writer.write(b"S")
            await writer.start_tls(transport.tls)
            tls_active = True
            continue
        if code in (codec.SSL_REQUEST, codec.GSSENC_REQUEST):
            writer.write(b"N")  # not offered (or already on TLS); the client continues as it is
            await writer.drain()
            continue
        if code == codec.CANCEL_REQUEST:
            if len(body) == 12:
                pid, secret = struct.unpack("!ii", body[4:12])
                on_cancel(pid, secret)
            return None
        if code >> 16 != 3:
            raise ProtocolViolation(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
        if transport.tls_required and not tls_active:
            raise InvalidAuthorization(
                "this server accepts TLS connections only", hint="Connect with sslmode=require."
            )
        params = codec.parse_startup_parameters(body[4:])
        unsupported = [k for k in params if k.startswith("_pq_.")]
        if code & 0xFFFF != 0 or unsupported:
            writer.write(codec.negotiate_protocol_version(0, unsupported))
        params = {k: v for k, v in params.items() if not k.startswith("_pq_.")}
        if not params.get("user"):
            raise InvalidAuthorization("no PostgreSQL user name specified in startup packet")
        user = params["user"]
        admit(user)  # raises while this user name or client address is throttled
        if transport.tokens is not None and tls_active:
            role = await _authenticate_cleartext(reader, writer, verifiers, transport.tokens, user)
        else:
            await _authenticate(reader, writer, verifiers, user)
            role = verifiers.role(user)
        return Startup(params, tls_active, role)


async def _read_password_message(reader: asyncio.StreamReader) -> bytes:
    kind = await reader.readexactly(1)
    length = struct.unpack("!i", await reader.readexactly(4))[0]
    if kind != b"p" or not 4 <= length <= MAX_STARTUP_LENGTH:
        raise ProtocolViolation("expected SASL response")
    return await reader.readexactly(length - 4)


async def _authenticate_cleartext(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    verifiers: Verifiers,
    tokens: TokenVerifier,
    user: str,
) -> str:
    """Inside TLS with JWT login on: a password message holds either a JWT or the user's password.

    Everyone is asked the same way, so the exchange reveals nothing about which users exist.
    """
    failed = AuthenticationFailed(f'password authentication failed for user "{user}"')
    writer.write(codec.authentication(3))
    await writer.drain()
    password = codec.Reader(await _read_password_message(reader)).cstring()
    if looks_like_token(password):
        try:
            claims = tokens.verify(password, user)
        except TokenRejected as err:
            log.info("token rejected for user %r: %s", user, err)
            raise failed from err
        role = verifiers.role(user) if verifiers.known(user) else tokens.role(claims)
        if role is None:
            log.info("token for user %r carries no known role", user)
            raise failed
        writer.write(codec.authentication_ok())
        return role
    # The (made-up) verifier is checked for unknown users too, so both take the same PBKDF2 time.
    matches = password_matches(verifiers.verifier(user), password)
    if not (matches and verifiers.has_password(user)):
        raise failed
    writer.write(codec.authentication_ok())
    return verifiers.role(user)


async def _authenticate(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, verifiers: Verifiers, user: str
) -> None:
    failed = AuthenticationFailed(f'password authentication failed for user "{user}"')
    writer.write(codec.authentication(10, codec.cstr(MECHANISM) + b"\x00"))
    await writer.drain()
    first = codec.Reader(await _read_password_message(reader))
    if first.cstring() != MECHANISM:
        raise failed
    client_first = first.bytes_(max(first.int32(), 0)).decode("utf-8", "replace")
    server = ScramServer(verifiers.verifier(user))
    try:
        writer.write(codec.authentication(11, server.first(client_first).encode()))
        await writer.drain()
        client_final = (await _read_password_message(reader)).decode("utf-8", "replace")
        server_final = server.final(client_final)
    except ScramError as err:
        raise failed from err
    if not verifiers.has_password(user):
        raise failed
    writer.write(codec.authentication(12, server_final.encode()))
    writer.write(codec.authentication_ok())
