"""Several worker processes serving one port (`workers` > 1): one server that uses every core.

`privacylens serve --workers N` runs a supervisor (this module) and N worker processes. The
supervisor binds one SO_REUSEPORT socket per worker (each inherits its own) and starts listening
once every worker is ready; the kernel spreads new connections over the workers by their source
address and port, so even connections opened one after another (a BI tool's pool) use every
worker. Each worker is a whole proxy (`proxy.server.Server`). What must hold across workers is
shared:

- the ledger, stored answers, detectors' history and audit log: one database, written in
  transactions under its write lock (as replicas share one, docs/operations.md), so a budget is
  never overspent and a question is charged once whichever worker answers it;
- rate limits, connection caps and the login throttle: `proxy.shared_limits`, one SQLite file in
  the run folder;
- cancel keys: a backend pid carries its worker's index; a CancelRequest that reaches another
  worker is passed on over that worker's Unix socket in the run folder;
- metrics: prometheus_client's multiprocess mode; the supervisor serves /metrics for all workers.

The supervisor recovers the activity store before any worker starts (recovery must not race a
writer), and worker 0 alone runs the periodic activity upkeep and audits policy loads. Should a
worker die (kill -9, a crash), the supervisor stops the others, recovers, and starts them all again,
as PostgreSQL's postmaster does after a backend crash: what was committed stays committed, and
nothing half-written is served. SIGTERM stops every worker (each writes its queued records first);
SIGHUP is passed on (policy reload).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from proxy.settings import ProxySettings

log = logging.getLogger("privacylens.workers")

RUN_DIR_ENV = "PRIVACYLENS_RUN_DIR"
WORKER_ENV = "PRIVACYLENS_WORKER_INDEX"
LISTEN_ENV = "PRIVACYLENS_LISTEN_FDS"  # the inherited listening sockets' descriptors, comma-separated
MAX_WORKERS = 16  # a backend pid's low 4 bits name its worker
STOP_SECONDS = 10.0
STARTUP_FAILURE = 2  # a worker's exit code when its settings or policy cannot be used


@dataclass(frozen=True)
class WorkerRole:
    """What a worker process knows of the others: its index and the run folder they share."""

    index: int
    run_dir: Path
    listen_fds: tuple[int, ...] = ()

    @classmethod
    def from_env(cls) -> WorkerRole | None:
        index = os.environ.get(WORKER_ENV)
        run_dir = os.environ.get(RUN_DIR_ENV)
        if index is None or run_dir is None:
            return None
        fds = tuple(int(fd) for fd in os.environ.get(LISTEN_ENV, "").split(",") if fd)
        return cls(int(index), Path(run_dir), fds)

    def listeners(self) -> list[socket.socket]:
        """The supervisor's listening sockets, inherited."""
        return [socket.socket(fileno=fd) for fd in self.listen_fds]

    def ready_and_wait(self) -> None:
        """Tell the supervisor this worker is ready, and wait until every worker is: the port opens
        for all of them at once (else the first one up would accept every early connection)."""
        (self.run_dir / f"ready-{self.index}").touch()
        while not (self.run_dir / "go").exists():
            time.sleep(0.02)

    @property
    def limits_path(self) -> Path:
        return self.run_dir / "limits.sqlite"

    def cancel_socket(self, index: int) -> Path:
        return self.run_dir / f"cancel-{index}.sock"

    def new_pid(self) -> int:
        """A random backend pid whose low bits are this worker's index."""
        return (secrets.randbits(26) << 4 | self.index) + (1 << 4)

    def forward_cancel(self, pid: int, secret: int) -> None:
        """Pass a CancelRequest to the worker whose session `pid` is (it checks the secret)."""
        owner = owner_of(pid)
        log.info("cancel request passed to worker %d", owner)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
                link.settimeout(1.0)
                link.connect(str(self.cancel_socket(owner)))
                link.sendall(struct.pack("!ii", pid, secret))
        except OSError:
            pass  # no such worker (a forged or stale key): a cancel is answered the same way


def owner_of(pid: int) -> int:
    return pid & (MAX_WORKERS - 1)


def supervise(settings: ProxySettings, argv: Sequence[str]) -> int:
    """Run `settings.workers` workers (each `python -m proxy.cli <argv>`) until SIGTERM or SIGINT."""
    count = settings.workers
    if not 1 < count <= MAX_WORKERS:
        log.error("cannot start: workers must be between 1 and %d, not %d", MAX_WORKERS, count)
        return STARTUP_FAILURE
    run_dir = Path(tempfile.mkdtemp(prefix="privacylens-run-", dir=_fast_folder()))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # before prometheus_client is imported
    stopping = threading.Event()
    workers: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    def reload(signum: int, frame: object) -> None:
        for worker in workers:
            worker.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    try:
        if not _recover(settings):
            return STARTUP_FAILURE
        try:
            listeners = _listen(settings.host, settings.port, count)
        except OSError as err:
            log.error("cannot listen on %s:%s: %s", settings.host, settings.port, err)
            return STARTUP_FAILURE
        _serve_metrics(settings)
        from proxy.shared_limits import SharedLimits

        limits = SharedLimits(run_dir / "limits.sqlite")
        fds = [[s.fileno() for s in mine] for mine in listeners]
        env = {**os.environ, RUN_DIR_ENV: str(run_dir)}
        while True:
            started = time.monotonic()
            workers[:] = [
                subprocess.Popen(
                    [sys.executable, "-m", "proxy.cli", *argv],
                    env={**env, WORKER_ENV: str(i), LISTEN_ENV: ",".join(map(str, fds[i]))},
                    pass_fds=fds[i],
                )
                for i in range(count)
            ]
            log.info("supervising %d workers: pids %s", count, ", ".join(str(w.pid) for w in workers))
            ended = _wait_until_ready(workers, run_dir, stopping)
            if ended is None and not stopping.is_set():
                for listener in (s for mine in listeners for s in mine):
                    listener.listen(1024)
                (run_dir / "go").touch()
                log.info(
                    "PrivacyLens listening on %s:%s with %d workers", settings.host, settings.port, count
                )
                ended = _wait_for_one(workers, stopping)
            _stop_all(workers)
            _forget(workers, limits)
            for flag in [run_dir / "go", *run_dir.glob("ready-*")]:
                flag.unlink(missing_ok=True)
            if ended is None:  # SIGTERM or SIGINT
                return 0
            code = ended.returncode
            if code == STARTUP_FAILURE and time.monotonic() - started < 30:
                log.error("a worker could not start (exit %d): stopping", code)
                return STARTUP_FAILURE
            log.error("worker pid %d ended with %s: restarting every worker after recovery", ended.pid, code)
            if time.monotonic() - started < 5:
                time.sleep(1.0)  # a worker that keeps dying must not spin
            if stopping.is_set() or not _recover(settings):
                return 0 if stopping.is_set() else STARTUP_FAILURE
    finally:
        _stop_all(workers)
        shutil.rmtree(run_dir, ignore_errors=True)


def _listen(host: str, port: int, count: int) -> list[list[socket.socket]]:
    """Each worker's sockets on every address `host` names (as asyncio.start_server binds them):
    one SO_REUSEPORT group per address, so the kernel spreads connections over the workers by
    their address and port. The supervisor keeps every socket open, so connections that arrive
    while a worker restarts wait for it."""
    addresses = []
    for family, kind, proto, _, address in socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        if (family, kind, proto, address) not in addresses:
            addresses.append((family, kind, proto, address))
    for family, kind, proto, address in addresses:  # taken by another server: refuse, never share it
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
    groups = []
    for _ in range(count):
        mine = []
        for family, kind, proto, address in addresses:
            listener = socket.socket(family, kind, proto)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)  # listening starts once every worker is ready
            listener.set_inheritable(True)
            mine.append(listener)
        groups.append(mine)
    return groups


def _wait_until_ready(
    workers: Sequence[subprocess.Popen[bytes]], run_dir: Path, stopping: threading.Event
) -> subprocess.Popen[bytes] | None:
    """Wait until every worker is ready to serve; the first that ended instead, if one did."""
    while not stopping.wait(0.02):
        for worker in workers:
            if worker.poll() is not None:
                return worker
        if all((run_dir / f"ready-{i}").exists() for i in range(len(workers))):
            return None
    return None


def _wait_for_one(
    workers: Sequence[subprocess.Popen[bytes]], stopping: threading.Event
) -> subprocess.Popen[bytes] | None:
    while not stopping.wait(0.2):
        for worker in workers:
            if worker.poll() is not None:
                return worker
    return None


def _stop_all(workers: Sequence[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for worker in workers:
        try:
            worker.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _forget(workers: Sequence[subprocess.Popen[bytes]], limits: object) -> None:
    from prometheus_client import multiprocess

    for worker in workers:
        multiprocess.mark_process_dead(worker.pid)
        limits.forget_worker(worker.pid)  # type: ignore[attr-defined]


def _recover(settings: ProxySettings) -> bool:
    """Before any worker serves: the activity store's crash recovery (proxy.server does it itself
    when it runs alone)."""
    from proxy.activity_query import ActivityService
    from proxy.guards import UnsafeForProduction, check_production
    from rewriter.policy import PolicyError, load_policy
    from stores.ledger import Ledger

    try:
        policy = load_policy(settings.policy)
        check_production(settings, policy)
        ledger = Ledger(settings.ledger)
    except (PolicyError, UnsafeForProduction, ValueError, OSError) as err:
        log.error("cannot start: %s", err)
        return False
    try:
        ActivityService(policy, ledger.db, settings.activity_store).recover()
    finally:
        ledger.close()
    return True


def _serve_metrics(settings: ProxySettings) -> None:
    """/metrics for every worker (their files in PROMETHEUS_MULTIPROC_DIR) and the ledger's gauges."""
    if not settings.metrics_port:
        return
    from prometheus_client import CollectorRegistry, multiprocess

    from proxy import metrics
    from rewriter.policy import PolicyError, load_policy
    from stores.database import as_database

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    db = as_database(settings.ledger)
    current = [load_policy(settings.policy), _stamp(settings.policy)]

    def policy():  # type: ignore[no-untyped-def]
        stamp = _stamp(settings.policy)
        if stamp != current[1]:
            try:
                current[:] = [load_policy(settings.policy), stamp]
            except PolicyError:
                pass  # the workers keep the old policy too
        return current[0]

    registry.register(metrics.LedgerCollector(db, policy))
    metrics.serve(settings.host, settings.metrics_port, settings.metrics_token, registry)
    log.info("metrics on http://%s:%s/metrics", settings.host, settings.metrics_port)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _fast_folder() -> str | None:
    """Memory-backed /dev/shm when there is one (the limits file is written on every query)."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
