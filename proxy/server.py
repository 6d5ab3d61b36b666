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
import signal
import ssl
import struct
import sys

import duckdb
from prometheus_client import REGISTRY

from engines.base import Engines
from engines.open import open_engines
from pgerrors import AuthenticationFailed, PgError, ProtocolViolation
from proxy import metrics
from proxy.activity_query import ActivityService
from proxy.auth import Verifiers
from proxy.catalog.engine import CatalogEngine
from proxy.connection import Connection
from proxy.gateway import Gateway
from proxy.guards import UnsafeForProduction, check_production
from proxy.limits import ConnectionCaps, LoginThrottle, MemoryLimits, RateLimiter
from proxy.session import SessionState
from proxy.settings import ProxySettings
from proxy.shared_limits import SharedLimits
from proxy.startup import Transport, negotiate
from proxy.tls import server_context
from proxy.tokens import TokenVerifier
from proxy.wire import codec
from proxy.workers import WorkerRole, owner_of
from rewriter.policy import Policy, PolicyError, load_policy
from stores.audit import AuditLog
from stores.ledger import Ledger

log = logging.getLogger("privacylens.server")
SWITCH_INTERVAL = 0.0005  # seconds


def new_pid() -> int:
    """A random backend pid for BackendKeyData (cancel keys are not guessable from it)."""
    return int.from_bytes(os.urandom(3), "big") + 1


ACTIVITY_UPKEEP_SECONDS = 300.0


class Server:
    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        # One of several worker processes (proxy.workers), or None when this process serves alone.
        self.role = WorkerRole.from_env()
        policy = load_policy(settings.policy)
        check_production(settings, policy)
        limits = MemoryLimits() if self.role is None else SharedLimits(self.role.limits_path)
        self.caps = ConnectionCaps(settings.max_connections, settings.max_connections_per_user, limits)
        self.verifiers = Verifiers(policy.users)
        self.logins = LoginThrottle(
            settings.max_login_failures_per_user, settings.max_login_failures_per_address, state=limits
        )
        ledger = Ledger(settings.ledger)
        self.bounding_secret = ledger.secret("contribution-bounding")
        engines = open_engines(policy, self.bounding_secret, settings.duckdb_memory_limit)
        audit = AuditLog(settings.ledger)
        self._audit_policy(audit, "policy loaded", policy)
        self._policy_stamp = _stamp(settings.policy)
        self._reloading = asyncio.Lock()
        activity = ActivityService(policy, ledger.db, settings.activity_store)
        if self.role is None:  # with workers, the supervisor recovers before any of them starts
            activity.recover()  # erasures replayed, segments reconciled: before anything is served
        self.gateway = Gateway(
            policy,
            engines,
            ledger,
            settings.statement_timeout,
            audit,
            rate_limiter=RateLimiter(settings.max_queries_per_minute, limits),
            activity=activity,
        )
        self.sessions: dict[int, tuple[int, SessionState]] = {}
        self._extra_servers: list[asyncio.Server] = []
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

    @property
    def leads(self) -> bool:
        """Whether this process does the once-per-server work: policy audits, activity upkeep,
        metrics (with workers, the supervisor serves those)."""
        return self.role is None or self.role.index == 0

    def start_metrics(self) -> None:
        if self.settings.metrics_port and self.role is None:
            REGISTRY.register(metrics.LedgerCollector(self.gateway.monitor.db, lambda: self.gateway.policy))
            metrics.serve(self.settings.host, self.settings.metrics_port, self.settings.metrics_token)
            log.info("metrics on http://%s:%s/metrics", self.settings.host, self.settings.metrics_port)

    def _audit_policy(self, audit: AuditLog, kind: str, policy: Policy) -> None:
        if not self.leads:
            return
        audit.record(
            kind,
            "privacylens",
            None,
            policy=self.settings.policy,
            version=policy.version,
            datasets=sorted(policy.datasets),
            users=sorted(policy.users),
        )

    async def reload_policy(self, reason: str) -> bool:
        """Load the policy file again and switch to it at once, or keep the old one if it is invalid.

        The new policy, its data engine and its catalog are built off the event loop; the switch is a
        few assignments on it, so every query runs wholly under the old policy or wholly under the new.
        """
        async with self._reloading:  # a SIGHUP and the file watcher may both fire for one edit
            return await self._reload_policy(reason)

    async def _reload_policy(self, reason: str) -> bool:
        audit = self.gateway.audit
        assert audit is not None
        try:
            policy = await asyncio.to_thread(load_policy, self.settings.policy)
            if policy.version == self.gateway.policy.version:
                return False
            check_production(self.settings, policy)
            engines = await asyncio.to_thread(
                open_engines, policy, self.bounding_secret, self.settings.duckdb_memory_limit
            )
            catalog = await asyncio.to_thread(CatalogEngine, policy, self.settings.ledger)
        except (PolicyError, UnsafeForProduction, OSError, ValueError, duckdb.Error) as err:
            log.error(
                "policy reload (%s) refused, keeping version %s: %s", reason, self.gateway.policy.version, err
            )
            await asyncio.to_thread(audit.record, "policy reload refused", "privacylens", None, reason=reason,
                                    error=str(err)[:2000])  # fmt: skip
            return False
        self.verifiers = Verifiers(policy.users)
        old = self.gateway.engines
        self.gateway.replace_policy(policy, engines, catalog)
        _close_later(old)
        log.info("policy reloaded (%s): version %s", reason, policy.version)
        await asyncio.to_thread(self._audit_policy, audit, "policy reloaded", policy)
        return True

    async def watch_policy(self, interval: float = 2.0) -> None:
        """Reload when the policy file changes (checked every `interval` seconds)."""
        while True:
            await asyncio.sleep(interval)
            stamp = _stamp(self.settings.policy)
            if stamp != self._policy_stamp:
                self._policy_stamp = stamp
                await self.reload_policy("file changed")

    async def serve_forever(self) -> None:
        # Planning runs in worker threads; a short GIL switch interval keeps the event loop's wait for
        # the GIL short while a worker is busy (the default 5 ms, paid at every socket call, made a
        # SELECT 1 beside a heavy plan take 100-250 ms).
        sys.setswitchinterval(SWITCH_INTERVAL)
        self.start_metrics()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload_policy("SIGHUP")))
        watcher = loop.create_task(self.watch_policy())
        upkeep = loop.create_task(self.maintain_activity()) if self.leads else None
        stopping = asyncio.Event()  # SIGTERM: stop accepting, write what is queued, exit 0
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        if self.role is not None:
            loop.add_signal_handler(signal.SIGINT, stopping.set)  # the supervisor decides (Ctrl-C)
            await asyncio.start_unix_server(self._cancel_link, str(self.role.cancel_socket(self.role.index)))
        if self.role is None:
            server = await asyncio.start_server(
                self.handle, self.settings.host, self.settings.port, limit=2**20
            )
        else:  # the supervisor's sockets: every worker accepts from them, once all are ready
            await asyncio.to_thread(self.role.ready_and_wait)
            first, *others = self.role.listeners()
            server = await asyncio.start_server(self.handle, sock=first, limit=2**20, backlog=1024)
            for extra in others:  # more addresses (IPv4 and IPv6): served for the process's life
                self._extra_servers.append(
                    await asyncio.start_server(self.handle, sock=extra, limit=2**20, backlog=1024)
                )
        addresses = ", ".join(str(s.getsockname()[:2]) for s in server.sockets)
        log.info("PrivacyLens listening on %s (policy %s)", addresses, self.settings.policy)
        try:
            async with server:
                serving = loop.create_task(server.serve_forever())
                stop = loop.create_task(stopping.wait())
                await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
                serving.cancel()
        finally:
            watcher.cancel()
            if upkeep is not None:
                upkeep.cancel()
            await asyncio.to_thread(self.gateway.write_pending)
            log.info("PrivacyLens stopped")

    async def maintain_activity(self, interval: float = ACTIVITY_UPKEEP_SECONDS) -> None:
        """Purge erased events, merge small segments and apply retention, every `interval` seconds."""
        while True:
            await asyncio.sleep(interval)
            service = self.gateway.activity
            if service is None:
                continue
            try:
                await asyncio.to_thread(service.maintain)
            except Exception:  # noqa: BLE001 - upkeep must not stop; the next round tries again
                log.exception("activity upkeep failed")

    def _new_pid(self) -> int:
        return new_pid() if self.role is None else self.role.new_pid()

    async def _login_failed(self, user: str, address: str) -> None:
        """Count a failed login against its user name and address, and audit it (off the loop)."""
        self.logins.failed(user, address)
        metrics.LOGIN_FAILURES.labels(reason="wrong credentials").inc()
        log.info("login failed for user %r from %s", user, address)
        audit = self.gateway.audit
        if audit is not None:
            await asyncio.to_thread(audit.record, "login failed", user, None, address=address)

    def cancel(self, pid: int, secret: int) -> None:
        if self.role is not None and owner_of(pid) != self.role.index:
            self.role.forward_cancel(pid, secret)  # another worker's session
            return
        entry = self.sessions.get(pid)
        if entry is not None and hmac.compare_digest(struct.pack("!i", entry[0]), struct.pack("!i", secret)):
            entry[1].running.interrupt()

    async def _cancel_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A CancelRequest another worker received for one of this worker's sessions."""
        try:
            pid, secret = struct.unpack("!ii", await asyncio.wait_for(reader.readexactly(8), 1.0))
            if self.role is not None and owner_of(pid) == self.role.index:
                self.cancel(pid, secret)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pid = None
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else "local"
        named: list[str] = []  # the user name the client gave, once it is known

        def admit(user: str) -> None:
            named.append(user)
            try:
                self.logins.admit(user, address)
            except PgError:
                metrics.LOGIN_FAILURES.labels(reason="throttled").inc()
                raise

        try:
            try:
                startup = await asyncio.wait_for(
                    negotiate(
                        reader,
                        writer,
                        self.verifiers,
                        self.cancel,
                        self.transport,
                        admit,
                    ),
                    self.settings.auth_timeout,
                )
            except PgError as error:
                if isinstance(error, AuthenticationFailed) and named:
                    await self._login_failed(named[0], address)
                error.severity = "FATAL"
                writer.write(codec.error_response(error))
                await writer.drain()
                return
            if startup is None:
                return
            user = startup.parameters["user"]
            try:
                self.caps.open(user)
            except PgError as error:
                error.severity = "FATAL"
                writer.write(codec.error_response(error))
                await writer.drain()
                return
            pid = self._new_pid()
            while pid in self.sessions:
                pid = self._new_pid()
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
                self.caps.close(user)
                metrics.CONNECTIONS.dec()
                entry = self.sessions.pop(pid, None)
                if entry is not None:
                    entry[1].running.interrupt()
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


def _close_later(engines: Engines, grace_seconds: float = 600.0) -> None:
    """Close a replaced policy's engines once the queries still running on them must have ended."""
    asyncio.get_running_loop().call_later(grace_seconds, engines.close)


def _stamp(path: str) -> tuple[int, int] | None:
    """What tells a changed file: modification time and size (None while it is missing)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
