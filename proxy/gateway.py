"""One statement in, one result out: the router.

Statements that read no data (SELECT without FROM, catalog queries) run on the data-less catalog
engine; schema probes are answered from the policy; SET, SHOW and transaction control change only
the session (`proxy.session`); DP queries over a dataset go to `proxy.dp_query`, the only path that
reaches a data engine or spends budget. Everything else is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlglot import exp

from engines.base import Engines
from pgerrors import FeatureNotAllowed, PgError
from proxy import metrics
from proxy.activity_query import ActivityService
from proxy.catalog.engine import CatalogEngine
from proxy.catalog.system_views import SCHEMA as SYSTEM_SCHEMA
from proxy.catalog.system_views import readable
from proxy.dp_query import DpQueries, limits_of
from proxy.limits import RateLimiter
from proxy.results import Column, Description, Result, duckdb_columns, plan_columns
from proxy.session import (
    SESSION_KINDS,
    SHOW_ALL_COLUMNS,
    SessionState,
    apply_set,
    run_session_statement,
    show_name,
)
from proxy.session_settings import SERVER_VERSION_LONG
from rewriter.activity_bi import bi_dau
from rewriter.activity_call import ActivityCall, activity_call
from rewriter.activity_write import erased_user, insert_rows, written_table
from rewriter.catalog_query import CatalogQuery, plan_catalog, reads_no_data
from rewriter.parse import Kind, Statement
from rewriter.policy import Policy
from rewriter.schema_probe import probe_columns
from stores.activity_input import Batch
from stores.audit import AuditLog, redact
from stores.ledger import Ledger
from stores.monitor import Monitor


class Gateway:
    def __init__(
        self,
        policy: Policy,
        engines: Engines,
        ledger: Ledger,
        max_statement_seconds: float = 300.0,
        audit: AuditLog | None = None,
        monitor: Monitor | None = None,
        rate_limiter: RateLimiter | None = None,
        activity: ActivityService | None = None,
    ) -> None:
        self.activity = activity
        self.rate_limiter = rate_limiter if rate_limiter is not None else RateLimiter(0)
        self.audit = audit
        self.max_statement_seconds = max_statement_seconds
        self.ledger = ledger
        self.catalog = CatalogEngine(policy, ledger.location)
        monitor = monitor if monitor is not None else Monitor(ledger.location)
        self.queries = DpQueries(policy, engines, ledger, monitor, audit, max_statement_seconds)

    @property
    def policy(self) -> Policy:
        return self.queries.policy

    @property
    def engines(self) -> Engines:
        return self.queries.engines

    @property
    def monitor(self) -> Monitor:
        return self.queries.monitor

    def write_pending(self) -> None:
        """Write the records queued for the next batch (re-served answers) before the process ends."""
        self.monitor.deferred.close()
        if self.audit is not None:
            self.audit.deferred.close()

    def _refresh_system_views(self) -> None:
        """The system views read the ledger: this process's queued records are written first, so a
        session sees its own re-served answers (another worker's may lag by one batch, 50 ms)."""
        self.monitor.deferred.flush()
        if self.audit is not None:
            self.audit.deferred.flush()
        assert self.catalog.system_views is not None
        self.catalog.system_views.refresh()

    def replace_policy(self, policy: Policy, engines: Engines, catalog: CatalogEngine) -> None:
        """Switch to a reloaded policy at once; queries already running finish on the old one."""
        self.queries.policy, self.queries.engines, self.catalog = policy, engines, catalog
        if self.activity is not None:
            self.activity.policy = policy

    # ---- checking and describing: never runs a data query, never costs budget ------------------

    def describe(
        self, statement: Statement, state: SessionState, declared: tuple[str | None, ...] = ()
    ) -> Description:
        """Parameter types and result columns, from the plan alone."""
        call = self._activity_call(statement)
        if call is not None:
            return self._activity().describe(call)
        if statement.kind is Kind.WRITE:
            self._written_activity(statement)
            assert statement.tree is not None
            return Description(("text",) * len(list(statement.tree.find_all(exp.Parameter))), None)
        if statement.kind is Kind.COPY_IN:
            self._copied_activity(statement)
            return Description((), None)
        if self._reads_no_data(statement):
            query = self._catalog_query(statement, state, declared)
            columns = self.catalog.describe(query.sql, [None] * len(query.parameter_types))
            return Description(query.parameter_types, duckdb_columns(columns))
        probe = self._probe(statement)
        if probe is not None:
            return Description((), probe)
        if statement.kind is Kind.AGGREGATE:
            plan = self.queries.plan(statement, state, declared)
            return Description(plan.parameter_types, plan_columns(plan))
        if statement.kind is Kind.SHOW:
            name = show_name(statement)
            return Description((), SHOW_ALL_COLUMNS if name.lower() == "all" else [(name, "text")])
        if statement.kind is Kind.EXPLAIN:
            if statement.inner is None or statement.inner.kind is not Kind.AGGREGATE:
                raise FeatureNotAllowed("EXPLAIN applies to DP queries over a dataset")
            self.queries.plan(statement.inner, state, declared)
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
        if statement.kind in (
            Kind.AGGREGATE,
            Kind.CONSTANT,
            Kind.OTHER,
            Kind.DECLARE,
            Kind.EXPLAIN,
            Kind.WRITE,
            Kind.COPY_IN,
        ):
            self.describe(statement, scratch)
        elif statement.kind is Kind.SET:
            apply_set(statement, scratch)

    # ---- executing ------------------------------------------------------------------------------

    async def execute(
        self,
        statement: Statement,
        state: SessionState,
        params: Sequence[Any] = (),
        declared: tuple[str | None, ...] = (),
    ) -> Result:
        state.transaction.check_may_run(statement.kind)
        kind = statement.kind
        call = self._activity_call(statement)
        if call is not None:
            self.rate_limiter.take("", state.user)
            return await self._activity().answer(call, list(params), state.user, state.role)
        if kind is Kind.WRITE:
            return await self._activity_write(statement, state, list(params))
        if self._reads_no_data(statement):
            self.rate_limiter.take("", state.user)  # data-less statements cost the engine too
            query = self._catalog_query(statement, state, declared)
            if query.system_views and self.catalog.system_views is not None:
                await asyncio.to_thread(self._refresh_system_views)
            limits = limits_of(state, self.max_statement_seconds)
            columns, rows = await self.catalog.run(query.sql, params, state.running, limits)
            return Result(duckdb_columns(columns), rows, f"SELECT {len(rows)}")
        probe = self._probe(statement)
        if probe is not None:
            return Result(probe, [], "SELECT 0")
        if kind is Kind.EXPLAIN:
            return await self.queries.explain(statement, state, params, declared)
        if kind is Kind.AGGREGATE:
            try:
                # Keyed on the authenticated user as the policy defines them, never on anything the
                # client picks (such as the database name in the startup message).
                self.rate_limiter.take("", state.user)
                return await self.queries.answer(statement, state, params, declared)
            except PgError as error:
                metrics.QUERIES.labels(_dataset_of(statement, self.policy), "refused", error.sqlstate).inc()
                await self.audit_refusal(state, error)
                raise
        if kind in SESSION_KINDS:
            return run_session_statement(statement, state)
        raise _refusal(statement)

    # ---- activity datasets ----------------------------------------------------------------------

    def _activity(self) -> ActivityService:
        if self.activity is None:
            raise FeatureNotAllowed("this server has no activity datasets")
        return self.activity

    def _activity_call(self, statement: Statement) -> ActivityCall | None:
        if statement.kind is not Kind.AGGREGATE:
            return None
        call = activity_call(statement.tree)
        if call is None and statement.tree is not None:
            named = {t.name.lower() for t in statement.tree.find_all(exp.Table) if not t.db}
            for dataset in sorted(named & set(self.policy.activities)):
                return bi_dau(statement.tree, dataset, self.policy.activities[dataset])
        return call

    def _written_activity(self, statement: Statement) -> str:
        table = written_table(statement.tree) if statement.tree is not None else None
        if table is None or table not in self.policy.activities:
            raise _refusal(statement)
        return table

    def _copied_activity(self, statement: Statement) -> str:
        assert statement.copy is not None
        if statement.copy.table not in self.policy.activities:
            raise FeatureNotAllowed(
                "COPY is allowed only into activity datasets",
                hint="Activity datasets in the policy: "
                + (", ".join(sorted(self.policy.activities)) or "none"),
            )
        return statement.copy.table

    async def copy_in(self, statement: Statement, state: SessionState, data: bytes) -> Result:
        """Store a COPY's rows, all or nothing (the connection has read them)."""
        dataset = self._copied_activity(statement)
        assert statement.copy is not None
        copy = statement.copy
        done = await asyncio.to_thread(
            self._activity().ingest_text,
            dataset,
            data,
            copy.format,
            copy.columns,
            copy.header,
            state.role,
            state.user,
        )
        return Result(None, [], f"COPY {done.events + done.erasures}")

    async def _activity_write(self, statement: Statement, state: SessionState, params: list[Any]) -> Result:
        dataset = self._written_activity(statement)
        service = self._activity()
        spec = service.spec(dataset)
        if isinstance(statement.tree, exp.Delete):
            user_id = erased_user(statement.tree, spec.user_id, params)
            await asyncio.to_thread(service.erase, dataset, user_id, state.role, state.user)
            return Result(None, [], "DELETE 1")
        assert isinstance(statement.tree, exp.Insert)
        columns, rows = insert_rows(statement.tree, params)
        segments = service.segment_columns(dataset, columns)
        order = [columns.index(c) if c in columns else None for c in ("user_id", "ts", "op", *segments)]
        full = [tuple(row[i] if i is not None else "+" for i in order) for row in rows]
        batch = Batch.of_rows(full, segments=segments)
        done = await asyncio.to_thread(service.ingest, dataset, batch, state.role, state.user)
        return Result(None, [], f"INSERT 0 {done.events + done.erasures}")

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


def _refusal(statement: Statement) -> PgError:
    what = statement.tree.key.upper() if statement.tree is not None else " ".join(statement.words[:1]).upper()
    return FeatureNotAllowed(
        f"{what} statements are not allowed by the DP policy",
        hint="PrivacyLens answers aggregate queries, e.g. "
        "SELECT department, COUNT(*), AVG(salary) FROM employees GROUP BY department",
    )


def _dataset_of(statement: Statement, policy: Policy) -> str:
    """The dataset a refused statement named, for a metrics label: only policy datasets (names written
    by clients would let anyone create unbounded series), else "-"."""
    table = statement.tree.find(exp.Table) if statement.tree is not None else None
    name = table.name.lower() if table is not None else ""
    return name if name in policy.datasets else "-"
