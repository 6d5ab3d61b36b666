"""The asyncio server: accepts connections, runs start-up, hands each client a Connection.

It owns the registry of BackendKeyData (pid, secret) → session, which CancelRequests use.
Every connection ends in `finally` cleanup; any unexpected exception is logged and closes only
that connection.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import ssl
import struct

from prometheus_client import start_http_server

from pgerrors import PgError, ProtocolViolation
from privacy.audit import AuditLog
from privacy.ledger import Ledger
from proxy import metrics
from proxy.auth import Verifiers
from proxy.connection import Connection
from proxy.engine import DuckDBEngine
from proxy.gateway import Gateway, SessionState
from proxy.settings import ProxySettings
from proxy.startup import Transport, negotiate
from proxy.tls import server_context
from proxy.tokens import TokenVerifier
from proxy.wire import codec
from rewriter.policy import load_policy

log = logging.getLogger("privacylens.server")


def new_pid() -> int:
    """A random backend pid for BackendKeyData (cancel keys are not guessable from it)."""
    return int.from_bytes(os.urandom(3), "big") + 1


class Server:
    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        policy = load_policy(settings.policy)
        self.verifiers = Verifiers(policy.users)
        ledger = Ledger(settings.ledger)
        engine = DuckDBEngine(policy, bounding_secret=ledger.secret("contribution-bounding"))
        audit = AuditLog(settings.ledger)
        audit.record(
            "policy loaded",
            "privacylens",
            None,
            policy=settings.policy,
            version=policy.version,
            datasets=sorted(policy.datasets),
            users=sorted(policy.users),
        )
        self.gateway = Gateway(policy, engine, ledger, settings.statement_timeout, audit)
        self.sessions: dict[int, tuple[int, SessionState]] = {}
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise ValueError("give both tls_cert and tls_key, or neither")
        if settings.tls_required and not settings.tls_cert:
            raise ValueError("tls_required needs tls_cert and tls_key")
        context = server_context(settings.tls_cert, settings.tls_key) if settings.tls_cert else None
        tokens = TokenVerifier.configure(
            settings.jwt_algorithms,
            settings.jwt_secret,
            settings.jwt_public_key,
            settings.jwt_audience,
            settings.jwt_issuer,
            settings.jwt_role_claim,
        )
        if tokens is not None and context is None:
            raise ValueError("JWT login needs TLS (tls_cert and tls_key): tokens are never sent in clear")
        self.transport = Transport(context, settings.tls_required, tokens)

    def start_metrics(self) -> None:
        if self.settings.metrics_port:
            start_http_server(self.settings.metrics_port, addr=self.settings.host)
            log.info("metrics on http://%s:%s/metrics", self.settings.host, self.settings.metrics_port)

    async def serve_forever(self) -> None:
        self.start_metrics()
        server = await asyncio.start_server(self.handle, self.settings.host, self.settings.port, limit=2**20)
        addresses = ", ".join(str(s.getsockname()[:2]) for s in server.sockets)
        log.info("PrivacyLens listening on %s (policy %s)", addresses, self.settings.policy)
        async with server:
            await server.serve_forever()

    def cancel(self, pid: int, secret: int) -> None:
        entry = self.sessions.get(pid)
        if entry is not None and hmac.compare_digest(struct.pack("!i", entry[0]), struct.pack("!i", secret)):
            entry[1].running.interrupt()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pid = None
        try:
            try:
                startup = await asyncio.wait_for(
                    negotiate(reader, writer, self.verifiers, self.cancel, self.transport),
                    self.settings.auth_timeout,
                )
            except PgError as error:
                error.severity = "FATAL"
                writer.write(codec.error_response(error))
                await writer.drain()
                return
            if startup is None:
                return
            user = startup.parameters["user"]
            pid = new_pid()
            while pid in self.sessions:
                pid = new_pid()
            secret = struct.unpack("!i", os.urandom(4))[0]
            database = startup.parameters.get("database", user)
            state = SessionState(user, startup.role, database, pid, tls=startup.tls)
            self.sessions[pid] = (secret, state)
            # A closed client shows as EOF on the reader (asyncio keeps the transport half-open).
            state.disconnected = lambda: reader.at_eof() or writer.transport.is_closing()
            connection = Connection(reader, writer, self.gateway, state)
            metrics.CONNECTIONS.inc()
            connection.greet(startup.parameters, secret)
            try:
                await connection.serve()
            except ProtocolViolation as error:
                connection.out += codec.error_response(error)
                await connection.flush()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        except Exception:
            log.exception("connection failed")
        finally:
            if pid is not None:
                metrics.CONNECTIONS.dec()
                entry = self.sessions.pop(pid, None)
                if entry is not None:
                    entry[1].running.interrupt()
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
