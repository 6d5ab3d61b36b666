"""One statement in, one result out: the only place the budget is charged.

For an aggregate query: plan (pure rewriter) → if this question was answered before, re-serve that
answer at no cost (privacy.answers) → else debit the ledger atomically → run the clipped SQL → draw
noise, store the answer → suppress, add intervals → result with a NOTICE on the budget. A debit is
never refunded: if the engine fails after it, the charge stands (fail closed; a refund could make
failures observable).
Statements that read no data (SET, SHOW, transaction control, SELECT without FROM) cost nothing and
never touch the data engine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlglot import exp

from pgerrors import (
    AccessDenied,
    FeatureNotAllowed,
    InFailedTransaction,
    InternalError,
    NoActiveTransaction,
    PgError,
)
from privacy.answers import FAILED, Answer, answer_key
from privacy.audit import AuditLog, redact
from privacy.budget import PureDP
from privacy.explain import explain
from privacy.ledger import Balance, Ledger
from privacy.monitor import Monitor, Observation
from privacy.release import draw_noise, present, released_sizes
from proxy import metrics
from proxy.catalog.engine import CatalogEngine
from proxy.catalog.system_views import SCHEMA as SYSTEM_SCHEMA
from proxy.catalog.system_views import readable
from proxy.engine import DuckDBEngine
from proxy.limits import RateLimiter
from proxy.running import Limits, RunningQuery, plan_off_loop
from proxy.session_settings import SERVER_VERSION_LONG, Settings
from rewriter.catalog_query import CatalogQuery, plan_catalog, reads_no_data
from rewriter.context import RewriteContext
from rewriter.parse import Kind, Statement
from rewriter.pipeline import plan_query
from rewriter.plan import PgType, Plan
from rewriter.policy import Dataset, Policy
from rewriter.schema_probe import probe_columns

Column = tuple[str, str]  # (name, PostgreSQL type name)
log = logging.getLogger("privacylens.gateway")


@dataclass
class SessionState:
    user: str
    role: str
    database: str
    pid: int
    tls: bool = False
    settings: Settings = field(default_factory=Settings)
    transaction: str = "I"  # ReadyForQuery status: I idle, T in transaction, E failed transaction
    running: RunningQuery = field(default_factory=RunningQuery)
    disconnected: Callable[[], bool] = field(default=lambda: False)


@dataclass
class Result:
    columns: list[Column] | None  # None: the statement returns no rows (SET, BEGIN, ...)
    rows: list[tuple]
    tag: str
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Description:
    parameter_types: tuple[PgType, ...]
    columns: list[Column] | None


class Gateway:
    def __init__(
        self,
        policy: Policy,
        engine: DuckDBEngine,
        ledger: Ledger,
        max_statement_seconds: float = 300.0,
        audit: AuditLog | None = None,
        monitor: Monitor | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter(0)
        self.audit = audit
        self.monitor = monitor if monitor is not None else Monitor(ledger.path)
        self.policy = policy
        self.max_statement_seconds = max_statement_seconds
        self.engine = engine
        self.ledger = ledger
        self.catalog = CatalogEngine(policy, ledger.path)
        self._question_locks: dict[str, asyncio.Lock] = {}

    def replace_policy(self, policy: Policy, engine: DuckDBEngine, catalog: CatalogEngine) -> None:
        """Switch to a reloaded policy at once; queries already running finish on the old one."""
        self.policy, self.engine, self.catalog = policy, engine, catalog

    # ---- checking and describing: never runs a data query, never costs budget ------------------

    def describe(
        self, statement: Statement, state: SessionState, declared: tuple[str | None, ...] = ()
    ) -> Description:
        """Parameter types and result columns, from the plan alone."""
        if self._reads_no_data(statement):
            query = self._catalog_query(statement, state, declared)
            columns = self.catalog.describe(query.sql, [None] * len(query.parameter_types))
            return Description(query.parameter_types, _columns(columns))
        probe = self._probe(statement)
        if probe is not None:
            return Description((), probe)
        if statement.kind is Kind.AGGREGATE:
            plan = self._plan(statement, state, declared)
            return Description(plan.parameter_types, _plan_columns(plan))
        if statement.kind is Kind.SHOW:
            name = _show_name(statement)
            if name.lower() == "all":
                return Description((), [("name", "text"), ("setting", "text"), ("description", "text")])
            return Description((), [(name, "text")])
        if statement.kind is Kind.EXPLAIN:
            if statement.inner is None or statement.inner.kind is not Kind.AGGREGATE:
                raise FeatureNotAllowed("EXPLAIN applies to DP queries over a dataset")
            self._plan(statement.inner, state, declared)
            return Description((), [("QUERY PLAN", "text")])
        if statement.kind is Kind.DECLARE:  # NoData, but the cursor's query is checked now
            inner = self.describe(statement.inner, state, declared) if statement.inner else None
            return Description(inner.parameter_types if inner else (), None)
        if statement.kind in (Kind.OTHER, Kind.CONSTANT):
            raise _refusal(statement)
        return Description((), None)

    def check(self, statement: Statement, scratch: SessionState) -> None:
        """Refuse now what `execute` would refuse, so a multi-statement query runs all or nothing.

        `scratch` is a throw-away copy of the session: a SET is applied to it, so later statements
        of the same string are checked with the settings they will run under.
        """
        if statement.kind in (Kind.AGGREGATE, Kind.CONSTANT, Kind.OTHER, Kind.DECLARE, Kind.EXPLAIN):
            self.describe(statement, scratch)
        elif statement.kind is Kind.SET:
            self._set(statement, scratch)

    # ---- executing ------------------------------------------------------------------------------

    async def execute(
        self,
        statement: Statement,
        state: SessionState,
        params: Sequence[Any] = (),
        declared: tuple[str | None, ...] = (),
    ) -> Result:
        if state.transaction == "E" and statement.kind not in (Kind.ROLLBACK, Kind.COMMIT, Kind.ROLLBACK_TO):
            raise InFailedTransaction(
                "current transaction is aborted, commands ignored until end of transaction block",
                hint="Send ROLLBACK.",
            )
        kind = statement.kind
        if self._reads_no_data(statement):
            self.rate_limiter.take("", state.user)  # data-less statements cost the engine too
            query = self._catalog_query(statement, state, declared)
            if query.system_views and self.catalog.system_views is not None:
                await asyncio.to_thread(self.catalog.system_views.refresh)
            columns, rows = await self.catalog.run(query.sql, params, state.running, self._limits(state))
            return Result(_columns(columns), rows, f"SELECT {len(rows)}")
        probe = self._probe(statement)
        if probe is not None:
            return Result(probe, [], "SELECT 0")
        if kind is Kind.EXPLAIN:
            return await self._explain(statement, state, params, declared)
        if kind is Kind.AGGREGATE:
            try:
                return await self._aggregate(statement, state, params, declared)
            except PgError as error:
                metrics.QUERIES.labels(_dataset_of(statement, self.policy), "refused", error.sqlstate).inc()
                await self.audit_refusal(state, error)
                raise
        if kind is Kind.SET:
            return self._set(statement, state)
        if kind is Kind.SHOW:
            name = _show_name(statement)
            if name.lower() == "all":
                rows = [(n, v, "") for n, v in state.settings.all(state.user)]
                return Result([("name", "text"), ("setting", "text"), ("description", "text")], rows, "SHOW")
            return Result([(name, "text")], [(state.settings.show(name, state.user),)], "SHOW")
        if kind is Kind.RESET:
            words = statement.words
            state.settings.reset(words[1] if len(words) > 1 else "all")
            return Result(None, [], "RESET")
        if kind is Kind.BEGIN:
            notices = ["there is already a transaction in progress"] if state.transaction != "I" else []
            state.transaction = "T" if state.transaction == "I" else state.transaction
            return Result(None, [], "BEGIN", notices)
        if kind in (Kind.SAVEPOINT, Kind.RELEASE, Kind.ROLLBACK_TO):
            if state.transaction == "I":
                raise NoActiveTransaction(
                    f"{kind.value.upper().replace('_', ' ')} can only be used in transaction blocks"
                )
            if kind is Kind.ROLLBACK_TO:
                state.transaction = "T"  # rolling back to a savepoint clears the failed state
            tag = {Kind.SAVEPOINT: "SAVEPOINT", Kind.RELEASE: "RELEASE", Kind.ROLLBACK_TO: "ROLLBACK"}[kind]
            return Result(None, [], tag)
        if kind in (Kind.COMMIT, Kind.ROLLBACK):
            failed = state.transaction == "E"
            notices = ["there is no transaction in progress"] if state.transaction == "I" else []
            state.transaction = "I"
            return Result(None, [], "ROLLBACK" if failed or kind is Kind.ROLLBACK else "COMMIT", notices)
        raise _refusal(statement)

    async def _aggregate(
        self,
        statement: Statement,
        state: SessionState,
        params: Sequence[Any],
        declared: tuple[str | None, ...],
    ) -> Result:
        # Keyed on the authenticated user as the policy defines them, never on anything the client picks
        # (such as the database name in the startup message).
        self.rate_limiter.take("", state.user)
        policy, engine = self.policy, self.engine  # a policy reload must not change them mid-query
        started = time.perf_counter()
        plan = await plan_off_loop(self._plan, statement, state, declared)
        metrics.PHASE_SECONDS.labels("plan").observe(time.perf_counter() - started)
        dataset = policy.datasets[plan.dataset]
        await self._apply_holds(plan, state, dataset)
        total = PureDP.total(dataset.budget.epsilon)
        key = answer_key(plan, params, policy.version, engine.data_version(plan.dataset))
        async with self._question_locks.setdefault(key, asyncio.Lock()):  # one answer per question
            stored = await asyncio.to_thread(self.ledger.find_answer, key)
            if stored == FAILED:
                raise _engine_failed()
            if stored is not None:
                balance = await self._balance(plan, state)
                notice = (
                    "answered again at no cost: this question was already answered "
                    f'on dataset "{plan.dataset}" '
                    f"(ε {balance.remaining.epsilon:.2f} of {total.epsilon:.2f} left); "
                    f"{plan.confidence:.0%} intervals shown"
                )
                answer = Answer.from_json(stored)
                rows = present(plan, answer)
                await self._observe(plan, state, statement, params, answer, rows, 0.0, dataset)
                metrics.QUERIES.labels(plan.dataset, "answered_again", "00000").inc()
                metrics.CACHE.labels(plan.dataset, "true").inc()
                await self._audit(
                    "query answered again", state.user, plan.dataset, fingerprint=plan.fingerprint, epsilon=0
                )
                return Result(_plan_columns(plan), rows, f"SELECT {len(rows)}", [notice])
            now = time.time()
            period, refreshes = dataset.budget.period(now), dataset.budget.refreshes(now)
            # The debit and its "query answered" audit row commit in one transaction.
            audited = {"delta": plan.delta} if self.audit is not None else None
            if dataset.budget.delta is None:
                cost = PureDP.from_epsilon(plan.cost)
                balance = await asyncio.to_thread(
                    self.ledger.debit,
                    plan.dataset,
                    state.user,
                    cost,
                    total,
                    plan.fingerprint,
                    period,
                    refreshes,
                    audited,
                )
            else:  # (ε, δ): the RDP accountant composes this query with everything charged before
                balance, cost = await asyncio.to_thread(
                    self.ledger.debit_events,
                    plan.dataset,
                    state.user,
                    plan.events,
                    total,
                    dataset.budget.delta,
                    plan.fingerprint,
                    period,
                    refreshes,
                    audited,
                )
            started = time.perf_counter()
            try:
                engine_columns, engine_rows = await engine.run(
                    plan.engine_sql, params, state.running, self._limits(state)
                )
            except InternalError:
                # Accepted plans are total (tests/test_plans_never_fail.py); should one still fail,
                # the charge stands, the failure is kept as this question's answer and the client
                # sees the same words whatever the data.
                await asyncio.to_thread(self.ledger.keep_answer, key, plan.dataset, state.user, FAILED)
                await self._audit("query failed", state.user, plan.dataset, fingerprint=plan.fingerprint)
                raise _engine_failed() from None
            metrics.PHASE_SECONDS.labels("engine").observe(time.perf_counter() - started)
            answer = draw_noise(plan, engine_columns, engine_rows)
            kept = await asyncio.to_thread(
                self.ledger.keep_answer, key, plan.dataset, state.user, answer.to_json()
            )
        started = time.perf_counter()
        answer = Answer.from_json(kept)  # another process may have stored its answer first
        rows = present(plan, answer)
        metrics.PHASE_SECONDS.labels("noise").observe(time.perf_counter() - started)
        observation = await self._observe(plan, state, statement, params, answer, rows, cost.epsilon, dataset)
        if observation.withheld_by is not None:
            alert = observation.withheld_by
            await self._audit(
                "answer withheld", state.user, plan.dataset, fingerprint=plan.fingerprint,
                epsilon=cost.epsilon, delta=plan.delta, alert=alert.id,
            )  # fmt: skip
            error = AccessDenied(
                f"this answer is withheld: it completes a suspected {alert.kind} attack on dataset "
                f'"{plan.dataset}" (alert {alert.id}); its ε {cost.epsilon:.2f} is spent',
                hint="Your queries on this dataset are refused until an admin clears the alert; "
                "auditors can review it in privacylens.alerts and privacylens.attack_replay.",
            )
            error.audited = True
            raise error
        metrics.QUERIES.labels(plan.dataset, "answered", "00000").inc()
        metrics.CACHE.labels(plan.dataset, "false").inc()
        metrics.EPSILON_SPENT.labels(plan.dataset).inc(cost.epsilon)
        suppressed = sum(1 for row in rows if row[-1])
        metrics.GROUPS.labels(plan.dataset, "true").inc(suppressed)
        metrics.GROUPS.labels(plan.dataset, "false").inc(len(rows) - suppressed)
        at_delta = f" at δ {dataset.budget.delta:g}" if dataset.budget.delta is not None else ""
        notice = (
            f'ε spent {cost.epsilon:.2f} of {total.epsilon:.2f}{at_delta} on dataset "{plan.dataset}" '
            f"({balance.remaining.epsilon:.2f} left); {plan.confidence:.0%} intervals shown"
        )
        return Result(_plan_columns(plan), rows, f"SELECT {len(rows)}", [notice])

    async def _apply_holds(self, plan: Plan, state: SessionState, dataset: Dataset) -> None:
        """Refuse or slow down the queries of accounts an attack alert holds (privacy.monitor)."""
        holds = await asyncio.to_thread(self.monitor.holds, plan.dataset, state.user)
        if not holds:
            return
        alert = holds[0]
        if alert.action == "refuse":
            until = dt.datetime.fromtimestamp(alert.until, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise AccessDenied(
                f'your queries on dataset "{plan.dataset}" are refused after a suspected '
                f"{alert.kind} attack (alert {alert.id})",
                hint=f"The refusal lifts at {until}, or sooner if an admin clears alert {alert.id}.",
            )
        await asyncio.sleep(dataset.detectors.throttle_seconds)

    async def _observe(
        self,
        plan: Plan,
        state: SessionState,
        statement: Statement,
        params: Sequence[Any],
        answer: Answer,
        rows: list[tuple],
        epsilon: float,
        dataset: Dataset,
    ) -> Observation:
        """Record a release and run the attack detectors; alerts are audited and counted."""
        sizes, size_sd = released_sizes(plan, answer)
        assert statement.tree is not None
        observation = await asyncio.to_thread(
            self.monitor.observe,
            plan.dataset,
            state.user,
            statement.tree.sql(dialect="postgres"),
            params,
            epsilon,
            epsilon > 0,
            plan.question.render(params),
            sizes,
            size_sd,
            rows,
            dataset.detectors,
            dataset.privacy_unit,
        )
        for alert, finding in observation.alerts:
            log.warning("attack alert %s (%s, %s): %s", alert.id, alert.kind, alert.action, alert.summary)
            await self._audit(
                "attack alert", "privacylens", plan.dataset, alert=alert.id, heuristic=alert.kind,
                action=alert.action, users=list(finding.users), queries=list(finding.queries),
                summary=alert.summary,
            )  # fmt: skip
        return observation

    async def _explain(
        self,
        statement: Statement,
        state: SessionState,
        params: Sequence[Any],
        declared: tuple[str | None, ...],
    ) -> Result:
        """The DP plan of a query, its ε split and expected errors: free, the engine is not touched."""
        if statement.inner is None or statement.inner.kind is not Kind.AGGREGATE:
            raise FeatureNotAllowed(
                "EXPLAIN applies to DP queries over a dataset",
                hint="EXPLAIN SELECT department, COUNT(*) FROM employees GROUP BY department",
            )
        plan = await plan_off_loop(self._plan, statement.inner, state, declared)
        dataset = self.policy.datasets[plan.dataset]
        total = PureDP.total(dataset.budget.epsilon)
        balance = await self._balance(plan, state)
        key = answer_key(plan, params, self.policy.version, self.engine.data_version(plan.dataset))
        answered = await asyncio.to_thread(self.ledger.find_answer, key) is not None
        lines = explain(plan, dataset, balance.remaining.epsilon, total.epsilon, answered)
        return Result([("QUERY PLAN", "text")], [(line,) for line in lines], "EXPLAIN")

    def _plan(self, statement: Statement, state: SessionState, declared: tuple[str | None, ...]) -> Plan:
        """Plan once per statement and context: Parse/Describe and Execute share the plan."""
        key = (self.policy.version, state.user, state.role, state.settings.epsilon(),
               state.settings.confidence(), state.settings.delta(), state.settings.mechanism(),
               state.settings.target_ci_width(), declared)  # fmt: skip
        plan = statement.plans.get(key)
        if plan is None:
            plan = statement.plans[key] = self._make_plan(statement, state, declared)
        assert isinstance(plan, Plan)
        return plan

    def _make_plan(self, statement: Statement, state: SessionState, declared: tuple[str | None, ...]) -> Plan:
        assert isinstance(statement.tree, exp.Select)
        ctx = RewriteContext(
            policy=self.policy,
            user=state.user,
            role=state.role,
            epsilon=state.settings.epsilon(),
            confidence=state.settings.confidence(),
            delta=state.settings.delta(),
            mechanism=state.settings.mechanism(),
            target_ci_width=state.settings.target_ci_width(),
            declared_parameter_types=declared,
            unique_units=self.engine.unique_units,
        )
        return plan_query(statement.tree, ctx)

    async def _balance(self, plan: Plan, state: SessionState) -> Balance:
        """The user's balance on the plan's dataset in the current budget period."""
        dataset = self.policy.datasets[plan.dataset]
        total = PureDP.total(dataset.budget.epsilon)
        period = dataset.budget.period(time.time())
        return await asyncio.to_thread(self.ledger.balance, plan.dataset, state.user, total, period)

    async def audit_refusal(self, state: SessionState, error: PgError, statement: str = "") -> None:
        """Audit a refused statement once, wherever it was refused (parse, plan, budget, limits).
        Transaction-state errors and cancellations are not refusals."""
        if error.audited or error.sqlstate.startswith("25") or error.sqlstate == "57014":
            return
        error.audited = True
        detail: dict[str, Any] = {"sqlstate": error.sqlstate, "message": error.message}
        if statement:
            detail["statement"] = redact(statement)[:1000]
        await self._audit("query refused", state.user, None, **detail)

    async def _audit(self, kind: str, user: str, dataset: str | None, **detail: Any) -> None:
        if self.audit is not None:
            await asyncio.to_thread(self.audit.record, kind, user, dataset, **detail)

    def _limits(self, state: SessionState) -> Limits:
        """The session's statement_timeout, never above the server's maximum; and its disconnect check."""
        session_ms = int(state.settings.values.get("statement_timeout") or 0)
        seconds = self.max_statement_seconds
        if session_ms > 0:
            seconds = min(seconds, session_ms / 1000)
        return Limits(timeout_seconds=seconds if seconds > 0 else None, disconnected=state.disconnected)

    def _probe(self, statement: Statement) -> list[Column] | None:
        """A schema probe (no rows whatever the data) is answered from metadata; auditors included."""
        if statement.kind is not Kind.AGGREGATE or statement.tree is None:
            return None
        return probe_columns(statement.tree, self.policy)

    def _reads_no_data(self, statement: Statement) -> bool:
        """SELECT without FROM, or a query over catalog relations only: the data-less catalog engine."""
        if statement.kind not in (Kind.AGGREGATE, Kind.CONSTANT, Kind.OTHER) or statement.tree is None:
            return False
        return reads_no_data(statement.tree, self.catalog.relation_names, self.policy.datasets)

    def _catalog_query(
        self, statement: Statement, state: SessionState, declared: tuple[str | None, ...]
    ) -> CatalogQuery:
        assert isinstance(statement.tree, exp.Query)

        def lookup(name: str, args: list[str]) -> str | int | list[str] | None:
            if name == "version":
                return SERVER_VERSION_LONG
            if name in ("current_user", "session_user", "user"):
                return state.user
            if name == "current_database":
                return state.database
            if name == "current_schema":
                return "public"
            if name == "current_schemas":
                return ["pg_catalog", "public"] if args and args[0] == "true" else ["public"]
            if name == "pg_backend_pid":
                return state.pid
            if name == "current_setting" and len(args) in (1, 2):
                return state.settings.show(args[0], state.user)
            if name in ("inet_server_port", "inet_server_addr", "pg_postmaster_start_time"):
                return None
            raise FeatureNotAllowed(f"{name}() is not supported with these arguments")

        system = {t.name.lower() for t in statement.tree.find_all(exp.Table) if t.db.lower() == SYSTEM_SCHEMA}
        views = {f"{SYSTEM_SCHEMA}.{name}": readable(name, state.role, state.user) for name in system}
        query = plan_catalog(
            statement.tree,
            lookup,
            declared,
            self.catalog.relation_names,
            {name: sql for name, sql in views.items() if sql is not None},
        )
        return replace(query, system_views=bool(system))

    def _set(self, statement: Statement, state: SessionState) -> Result:
        assert isinstance(statement.tree, exp.Set)
        for item in statement.tree.expressions:
            assignment = item.this if isinstance(item, exp.SetItem) else None
            if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
                raise FeatureNotAllowed(
                    "this form of SET is not supported",
                    hint="Use SET name = value, e.g. SET dp.epsilon = 0.2",
                )
            name = ".".join(p.name for p in assignment.this.parts)
            value = _set_value(assignment.expression)
            if value is None:
                state.settings.reset(name)
            else:
                state.settings.set(name, value)
        return Result(None, [], "SET")


def _set_value(value: exp.Expression) -> str | None:
    if isinstance(value, exp.Literal):
        return value.this
    if isinstance(value, (exp.Column, exp.Identifier, exp.Var)):
        name = value.name
        return None if name.lower() == "default" else name
    if isinstance(value, exp.Tuple):
        return ", ".join(str(_set_value(v)) for v in value.expressions)
    if isinstance(value, exp.Boolean):
        return "on" if value.this else "off"
    if isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal):
        return "-" + value.this.this
    raise FeatureNotAllowed("SET takes a literal value")


_SHOW_ALIASES = {
    "transaction isolation level": "transaction_isolation",
    "time zone": "timezone",
    "session authorization": "session_authorization",
}


def _show_name(statement: Statement) -> str:
    """SHOW's argument, e.g. `dp.epsilon` from the tokens SHOW, dp, ., epsilon."""
    words = " ".join(statement.words[1:]).strip().strip('"')
    name = re.sub(r"\s*\.\s*", ".", words)
    return _SHOW_ALIASES.get(name.lower(), name) or "all"


def _engine_failed() -> PgError:
    error = InternalError(
        "this question could not be answered; its ε is spent",
        hint="Ask it in another way; asking this one again gives this error at no cost.",
    )
    error.audited = True
    return error


def _refusal(statement: Statement) -> PgError:
    what = statement.tree.key.upper() if statement.tree is not None else " ".join(statement.words[:1]).upper()
    return FeatureNotAllowed(
        f"{what} statements are not allowed by the DP policy",
        hint="PrivacyLens answers aggregate queries, e.g. "
        "SELECT department, COUNT(*), AVG(salary) FROM employees GROUP BY department",
    )


_DUCKDB_TO_PG = {"INTEGER": "int4", "BIGINT": "int8", "SMALLINT": "int2", "TINYINT": "int2",
                 "UINTEGER": "int8", "USMALLINT": "int4", "UTINYINT": "int2", "DOUBLE": "float8",
                 "FLOAT": "float4", "BOOLEAN": "bool", "VARCHAR": "text", "DATE": "date",
                 "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz", "TIME": "time",
                 "INTERVAL": "interval", "UUID": "uuid", "BLOB": "bytea", "HUGEINT": "numeric"}  # fmt: skip
_ARRAYS = {"int2": "_int2", "int4": "_int4", "int8": "_int8", "text": "_text", "bool": "_bool",
           "float8": "_float8", "float4": "_float4", "date": "_date", "numeric": "_numeric"}  # fmt: skip


def _pg_type(duckdb_type: str) -> str:
    if duckdb_type.endswith("[]"):
        return _ARRAYS.get(_pg_type(duckdb_type[:-2]), "_text")
    if duckdb_type.startswith("DECIMAL"):
        return "numeric"
    return _DUCKDB_TO_PG.get(duckdb_type, "text")


def _dataset_of(statement: Statement, policy: Policy) -> str:
    """The dataset a refused statement named, for a metrics label: only policy datasets (names written
    by clients would let anyone create unbounded series), else "-"."""
    table = statement.tree.find(exp.Table) if statement.tree is not None else None
    name = table.name.lower() if table is not None else ""
    return name if name in policy.datasets else "-"


def _plan_columns(plan: Plan) -> list[Column]:
    return [(c.name, c.pg_type) for c in plan.columns]


def _columns(described: Sequence[tuple[str, str]]) -> list[Column]:
    return [(name, _pg_type(duckdb_type)) for name, duckdb_type in described]
