"""Prometheus metrics, declared once. Served by `privacylens serve --metrics-port` (0 turns them off).

Counters and histograms count this process's work (with several workers, every worker's: the
supervisor serves them from prometheus_client's multiprocess files, proxy.workers). Budgets and
alerts are read from the ledger database at each scrape (`LedgerCollector`), so they survive
restarts and agree across replicas. Labels carry dataset names, outcomes, SQLSTATEs and (for
budgets) policy user names — never client-chosen text, never data.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rewriter.policy import Policy
from stores.database import Database
from stores.ledger import current_accounts

ALERT_KINDS = ("differencing", "averaging", "burst")  # privacy.detectors

QUERIES = Counter(
    "privacylens_queries_total",
    "DP queries by dataset and outcome (answered, answered_again, refused).",
    ["dataset", "outcome", "sqlstate"],
)
EPSILON_SPENT = Counter("privacylens_epsilon_spent_total", "ε charged, by dataset.", ["dataset"])
GROUPS = Counter(
    "privacylens_groups_released_total",
    "Groups released, by dataset and whether suppressed.",
    ["dataset", "suppressed"],
)
PHASE_SECONDS = Histogram(
    "privacylens_query_phase_seconds",
    "Time per phase of a fresh DP query: plan, check (budget headroom and parameter binding), engine, "
    "noise, charge (debit, audit row and stored answer in one transaction), present, detect, send.",
    ["phase"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STATEMENT_CACHE = Counter(
    "privacylens_statement_cache_total",
    "Statement texts found already parsed (hit: parse and plan skipped) or parsed afresh (miss).",
    ["outcome"],
)
CONNECTIONS = Gauge("privacylens_connections", "Open client connections.", multiprocess_mode="livesum")
LOGIN_FAILURES = Counter(
    "privacylens_login_failures_total",
    "Failed logins: wrong credentials, or refused by the login throttle.",
    ["reason"],
)
CACHE = Counter(
    "privacylens_answer_cache_total",
    "DP questions by whether the answer cache served them.",
    ["dataset", "hit"],
)

ACTIVITY_EVENTS = Counter(
    "privacylens_activity_events_ingested_total", "Activity events stored, by dataset.", ["dataset"]
)
ACTIVITY_ERASURES = Counter(
    "privacylens_activity_erasures_total", "Erasures recorded (and applied to later releases).", ["dataset"]
)
ACTIVITY_PENDING_ERASURES = Gauge(
    "privacylens_activity_erasures_pending",
    "Months whose stored events still hold rows an erasure covers (flush-deletes purges them).",
    ["dataset"],
    multiprocess_mode="mostrecent",
)
ACTIVITY_RELEASES = Counter(
    "privacylens_activity_releases_total",
    "DAU / MAU days asked for, by outcome (released, re-served, pending).",
    ["dataset", "metric", "outcome"],
)
ACTIVITY_EPSILON = Counter(
    "privacylens_activity_epsilon_spent_total",
    "ε charged to activity releases, by metric.",
    ["dataset", "metric"],
)


class LedgerCollector(Collector):
    """Budget totals, what is left per (dataset, user) in the current period, and attack alerts."""

    def __init__(self, db: Database, policy: Callable[[], Policy]) -> None:
        self._db = db
        self._policy = policy

    def collect(self) -> Iterator[Metric]:
        policy = self._policy()
        total = GaugeMetricFamily(
            "privacylens_budget_total", "ε each user may spend per period.", labels=["dataset"]
        )
        left = GaugeMetricFamily(
            "privacylens_budget_remaining", "ε left in the current period.", labels=["dataset", "user"]
        )
        ratio = GaugeMetricFamily(
            "privacylens_budget_remaining_ratio",
            "Share of the budget left (0 to 1).",
            labels=["dataset", "user"],
        )
        alerts = CounterMetricFamily(
            "privacylens_alerts",
            "Attack alerts raised, by dataset and heuristic.",
            labels=["dataset", "kind"],
        )
        db = self._db
        for name, dataset in sorted(policy.datasets.items()):
            total.add_metric([name], dataset.budget.epsilon)
        for account in current_accounts(db, policy, time.time()):
            left.add_metric([account.dataset, account.user], account.remaining)
            ratio.add_metric([account.dataset, account.user], account.remaining / account.total)
        counts = {(name, kind): 0 for name in policy.datasets for kind in ALERT_KINDS}  # series from 0
        counts.update(
            {(d, k): n for d, k, n in db.query("SELECT dataset, kind, count(*) FROM alerts GROUP BY 1, 2")}
        )
        for (dataset_name, kind), count in sorted(counts.items()):
            alerts.add_metric([dataset_name, kind], count)
        yield from (total, left, ratio, alerts)


def serve(host: str, port: int, token: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics in a daemon thread; with a token, only to `Authorization: Bearer <token>`.

    Latency histograms and counters are timings and tallies of private-data queries: outside
    development they are for the operators' Prometheus (`bearer_token` / `authorization` in its
    scrape config), never for anyone who can reach the port.
    """
    app = make_wsgi_app(registry)
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:  # type: ignore[type-arg]
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        if token and not hmac.compare_digest(given, expected):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="privacylens"')])
            return [b"a bearer token is required\n"]
        return app(environ, start_response)  # type: ignore[no-any-return]

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass

    class Threading(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server(host, port, guarded, server_class=Threading, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
