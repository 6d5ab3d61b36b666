"""A DP query over a dataset, answered: plan → cached answer, or check → engine → noise → charge and
store → released rows.

If this question was answered before, the stored answer is re-served at no cost. Otherwise the budget
is checked (reading only: 53400 before the engine runs) and the parameters are bound by the engine
without reading data (42804 before anything is spent); the engine runs, the noise is drawn, and the
debit, its audit row and the stored answer commit in one ledger transaction
(`Ledger.charge_and_keep`, the only place budget is spent) before anything is sent; then the answer
is presented (suppression, intervals, HAVING, ORDER BY, LIMIT: post-processing). A charge is never
refunded and an engine failure is charged all the same, its failure kept as the question's answer
(a free failure could make data observable).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from answers.answer import FAILED, Answer, answer_key
from answers.buckets import assemble, bucket_keys, bucket_values, placeholder, split
from answers.explain import explain
from answers.release import draw_noise, present, released_sizes
from engines.base import Engine, Engines
from engines.running import Limits
from pgerrors import AccessDenied, FeatureNotAllowed, InternalError, PgError
from privacy.budget import PureDP
from proxy import metrics
from proxy.planning import plan_off_loop
from proxy.results import Result, plan_columns
from proxy.session import SessionState
from rewriter.context import RewriteContext
from rewriter.parse import Kind, Statement
from rewriter.pipeline import plan_query
from rewriter.plan import Plan
from rewriter.policy import Dataset, Policy
from rewriter.rules.resolve_clock import uses_clock
from stores.audit import AuditLog
from stores.ledger import Balance, Cost, Ledger, Terms
from stores.monitor import Monitor, Observation

log = logging.getLogger("privacylens.dp_query")


@dataclass
class DpQueries:
    policy: Policy
    engines: Engines
    ledger: Ledger
    monitor: Monitor
    audit: AuditLog | None
    max_statement_seconds: float

    def __post_init__(self) -> None:
        self._question_locks: dict[str, asyncio.Lock] = {}

    # ---- planning: pure, shared by Describe and Execute ----------------------------------------

    def plan(
        self,
        statement: Statement,
        state: SessionState,
        declared: tuple[str | None, ...],
        unique_units: frozenset[str] | None = None,
    ) -> Plan:
        """Plan once per statement and context: Parse/Describe and Execute share the plan. Datasets
        in `unique_units` (by default: those whose data was last checked to hold one row per unit)
        get plans without contribution bounding."""
        key, now, unique = self._plan_key(statement, state, declared, unique_units)
        plan = statement.plans.get(key)
        if plan is None:
            assert isinstance(statement.tree, exp.Select)
            settings = state.settings
            ctx = RewriteContext(
                policy=self.policy,
                user=state.user,
                role=state.role,
                epsilon=settings.epsilon(),
                confidence=settings.confidence(),
                delta=settings.delta(),
                mechanism=settings.mechanism(),
                target_ci_width=settings.target_ci_width(),
                declared_parameter_types=declared,
                unique_units=unique,
                now=now,
            )
            if len(statement.plans) >= 64:  # a statement read by many contexts, or by the clock
                statement.plans.clear()
            plan = statement.plans[key] = plan_query(statement.tree, ctx)
        assert isinstance(plan, Plan)
        return plan

    async def planned(
        self,
        statement: Statement,
        state: SessionState,
        declared: tuple[str | None, ...],
        unique_units: frozenset[str] | None = None,
    ) -> Plan:
        """`plan`, taken from the statement's plans on the event loop when it was made before (a dict
        lookup), or made in a worker thread (planning may take milliseconds)."""
        plan = statement.plans.get(self._plan_key(statement, state, declared, unique_units)[0])
        if isinstance(plan, Plan):
            return plan
        return await plan_off_loop(self.plan, statement, state, declared, unique_units)

    def _plan_key(
        self,
        statement: Statement,
        state: SessionState,
        declared: tuple[str | None, ...],
        unique_units: frozenset[str] | None,
    ) -> tuple[tuple[Any, ...], dt.datetime, frozenset[str]]:
        """Everything a plan depends on, the time it is made at and the datasets planned as holding
        one row per unit."""
        settings = state.settings
        unique = self.engines.unique_units if unique_units is None else unique_units
        # A statement that reads the clock (now(), CURRENT_DATE) means something new each second.
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
        clock = now if _reads_clock(statement) else None
        key = (self.policy.version, state.user, state.role, settings.epsilon(), settings.confidence(),
               settings.delta(), settings.mechanism(), settings.target_ci_width(), declared,
               unique, clock)  # fmt: skip
        return key, now, unique

    # ---- answering ------------------------------------------------------------------------------

    async def answer(
        self,
        statement: Statement,
        state: SessionState,
        params: Sequence[Any],
        declared: tuple[str | None, ...],
    ) -> Result:
        policy, engines = self.policy, self.engines  # a policy reload must not change them mid-query
        started = time.perf_counter()
        unique = engines.unique_units
        plan = await self.planned(statement, state, declared, unique)
        metrics.PHASE_SECONDS.labels("plan").observe(time.perf_counter() - started)
        dataset = policy.datasets[plan.dataset]
        engine = engines.of(plan.dataset)
        await self._apply_holds(plan, state, dataset)
        total = PureDP.total(dataset.budget.epsilon)
        version = await asyncio.to_thread(engine.data_version, plan.dataset)  # file stats or a PG query
        if plan.dataset in unique and plan.dataset not in engine.unique_units:
            # New data since its one-row-per-unit check: bound contribution until it is checked again.
            plan = await self.planned(statement, state, declared, engines.unique_units)
        if plan.keys and any(not key.values for key in plan.keys):  # decided by public domains only
            notice = (
                f'no group of this query is in the public domain of dataset "{plan.dataset}" (its declared '
                "values and time range): nothing is released and nothing is spent"
            )
            return Result(plan_columns(plan), [], "SELECT 0", [notice])
        notes = [_widened_notice(plan)] if plan.bucketing is not None and plan.bucketing.widened else []
        pending: frozenset[Any] = frozenset()
        if plan.bucketing is not None and bucket_values(plan):
            pending = _pending(plan, dataset)
            if pending:
                assert dataset.append_only is not None
                notes.append(
                    f"{len(pending)} time bucket(s) not complete yet come back NULL with pending = true, "
                    f"at no cost; each is released once complete ({dataset.append_only.complete_after} "
                    "after it ends)"
                )
            versions = await self._bucket_versions(plan, engine, version)
            bucket_key = bucket_keys(plan, params, policy.answer_version(plan.dataset), versions)
            answer, fresh = await self._release_buckets(
                plan, state, params, dataset, engine, bucket_key, pending
            )
            if fresh is None:
                return await self._answer_again(plan, state, statement, params, answer, notes, pending)
            balance, spent, new, old = fresh
            notes.append(f"{new} new time bucket(s) released, {old} re-served at no cost")
        else:
            key = answer_key(plan, params, policy.answer_version(plan.dataset), version)
            async with self._question_locks.setdefault(key, asyncio.Lock()):  # one answer per question
                stored = await asyncio.to_thread(self.ledger.find_answer, key)
                if stored == FAILED:
                    raise _engine_failed()
                if stored is not None:
                    return await self._answer_again(
                        plan, state, statement, params, Answer.from_json(stored), notes
                    )
                kept, balance, spent = await self._release(
                    plan, state, params, dataset, engine, lambda released: {key: released.to_json()}, [key]
                )
            answer = Answer.from_json(kept[key])  # another process may have stored its answer first
        started = time.perf_counter()
        rows = present(plan, answer, pending)
        metrics.PHASE_SECONDS.labels("present").observe(time.perf_counter() - started)
        started = time.perf_counter()
        observation = await self._observe(
            plan, state, statement, params, answer, rows, spent.epsilon, dataset
        )
        metrics.PHASE_SECONDS.labels("detect").observe(time.perf_counter() - started)
        if observation.withheld_by is not None:
            alert = observation.withheld_by
            await self._audit(
                "answer withheld", state.user, plan.dataset, fingerprint=plan.fingerprint,
                epsilon=spent.epsilon, delta=plan.delta, alert=alert.id,
            )  # fmt: skip
            error = AccessDenied(
                f"this answer is withheld: it completes a suspected {alert.kind} attack on dataset "
                f'"{plan.dataset}" (alert {alert.id}); its ε {spent.epsilon:.2f} is spent',
                hint="Your queries on this dataset are refused until an admin clears the alert; "
                "auditors can review it in privacylens.alerts and privacylens.attack_replay.",
            )
            error.audited = True
            raise error
        metrics.QUERIES.labels(plan.dataset, "answered", "00000").inc()
        metrics.CACHE.labels(plan.dataset, "false").inc()
        metrics.EPSILON_SPENT.labels(plan.dataset).inc(spent.epsilon)
        suppressed = sum(1 for row in rows if row[-1])
        metrics.GROUPS.labels(plan.dataset, "true").inc(suppressed)
        metrics.GROUPS.labels(plan.dataset, "false").inc(len(rows) - suppressed)
        at_delta = f" at δ {dataset.budget.delta:g}" if dataset.budget.delta is not None else ""
        notice = (
            f'ε spent {spent.epsilon:.2f} of {total.epsilon:.2f}{at_delta} on dataset "{plan.dataset}" '
            f"({balance.remaining.epsilon:.2f} left); {plan.confidence:.0%} intervals shown"
        )
        return Result(plan_columns(plan), rows, f"SELECT {len(rows)}", [notice, *notes])

    async def _release(
        self,
        plan: Plan,
        state: SessionState,
        params: Sequence[Any],
        dataset: Dataset,
        engine: Engine,
        keeping: Callable[[Answer], dict[str, str]],
        keys: Sequence[str],
        span: tuple[dt.datetime, dt.datetime] | None = None,
    ) -> tuple[dict[str, str], Balance, PureDP]:
        """Release the question: refuse it if the budget cannot pay (reading only) or its parameters
        cannot bind, run its plan (a bucketed one over `span`), draw its noise, then debit, audit and
        store the answers `keeping` makes of the release (keyed by `keys`) in one transaction, before
        anything is sent. Should the engine fail, the charge is made all the same and the failure kept
        under `keys`: asking again gives the same error, whatever the data."""
        terms = Terms.of(dataset.budget, time.time())
        cost = Cost(plan.cost, plan.events if dataset.budget.delta is not None else ())
        audited = {"delta": plan.delta} if self.audit is not None else None
        bound = plan.engine_parameters(params, *(span or (None, None)))
        started = time.perf_counter()
        await asyncio.to_thread(self.ledger.headroom, plan.dataset, state.user, cost, terms)
        # Parameters the engine cannot bind fail whatever the data: refused before the charge.
        await engine.check(plan, bound)
        metrics.PHASE_SECONDS.labels("check").observe(time.perf_counter() - started)
        started = time.perf_counter()
        try:
            engine_columns, engine_rows = await engine.run(plan, bound, state.running, self._limits(state))
        except InternalError:
            # Accepted plans are total (tests/test_plans_never_fail.py); should one still fail,
            # the charge stands, the failure is kept as this question's answer and the client
            # sees the same words whatever the data.
            failed = dict.fromkeys(keys, FAILED)
            await asyncio.to_thread(
                self.ledger.charge_and_keep, plan.dataset, state.user, cost, terms, plan.fingerprint,
                audited, failed,
            )  # fmt: skip
            await self._audit("query failed", state.user, plan.dataset, fingerprint=plan.fingerprint)
            raise _engine_failed() from None
        metrics.PHASE_SECONDS.labels("engine").observe(time.perf_counter() - started)
        started = time.perf_counter()
        released = draw_noise(plan, engine_columns, engine_rows)
        metrics.PHASE_SECONDS.labels("noise").observe(time.perf_counter() - started)
        started = time.perf_counter()
        balance, spent, kept = await asyncio.to_thread(
            self.ledger.charge_and_keep, plan.dataset, state.user, cost, terms, plan.fingerprint,
            audited, keeping(released),
        )  # fmt: skip
        metrics.PHASE_SECONDS.labels("charge").observe(time.perf_counter() - started)
        return kept, balance, spent

    async def _release_buckets(
        self,
        plan: Plan,
        state: SessionState,
        params: Sequence[Any],
        dataset: Dataset,
        engine: Engine,
        bucket_key: tuple[str, dict[Any, str]],
        pending: frozenset[Any],
    ) -> tuple[Answer, tuple[Balance, PureDP, int, int] | None]:
        """A bucketed question (`bucket_key`: its own key and each bucket's): stored buckets as they
        are, the others released afresh in one query (charged once); None in place of the charge
        when every bucket was stored already."""
        base, keys = bucket_key
        async with self._question_locks.setdefault(base, asyncio.Lock()):  # one release per bucket
            found = await asyncio.to_thread(
                self.ledger.find_answers, [k for v, k in keys.items() if v not in pending]
            )
            stored = {v: found[k] for v, k in keys.items() if v not in pending}
            if FAILED in stored.values():
                raise _engine_failed()
            missing = [value for value, answer in stored.items() if answer is None]
            fresh = None
            if missing:
                assert plan.bucketing is not None
                span = plan.bucketing.span(missing)

                def keeping(released: Answer) -> dict[str, str]:
                    parts = split(plan, released)
                    return {keys[v]: parts[v].to_json() for v in missing}

                kept, balance, spent = await self._release(
                    plan, state, params, dataset, engine, keeping, [keys[v] for v in missing], span
                )
                stored.update({v: kept[keys[v]] for v in missing})
                fresh = (balance, spent, len(missing), len(keys) - len(missing))
        answers = {value: Answer.from_json(text) for value, text in stored.items() if text is not None}
        answers.update(dict.fromkeys(pending, placeholder(plan)))  # never released: shown as NULL
        return assemble(plan, answers), fresh

    async def _bucket_versions(self, plan: Plan, engine: Engine, version: str) -> dict[Any, str]:
        """Each bucket's data version (`version`: the dataset's, already read): a bucket's stored
        release lives as long as its own rows."""
        assert plan.bucketing is not None
        values = bucket_values(plan)
        spans = [plan.bucketing.span([value]) for value in values]
        versions = await asyncio.to_thread(
            engine.bucket_versions, plan.dataset, plan.bucketing.column, spans, version
        )
        return dict(zip(values, versions, strict=True))

    async def _answer_again(
        self,
        plan: Plan,
        state: SessionState,
        statement: Statement,
        params: Sequence[Any],
        answer: Answer,
        notes: Sequence[str] = (),
        pending: frozenset[Any] = frozenset(),
    ) -> Result:
        dataset = self.policy.datasets[plan.dataset]
        balance = await self.balance(plan, state)
        notice = (
            "answered again at no cost: this question was already answered "
            f'on dataset "{plan.dataset}" '
            f"(ε {balance.remaining.epsilon:.2f} of {balance.total.epsilon:.2f} left); "
            f"{plan.confidence:.0%} intervals shown"
        )
        rows = present(plan, answer, pending)
        await self._observe(plan, state, statement, params, answer, rows, 0.0, dataset)
        metrics.QUERIES.labels(plan.dataset, "answered_again", "00000").inc()
        metrics.CACHE.labels(plan.dataset, "true").inc()
        if self.audit is not None:  # written with the next batch: a re-serve releases nothing new
            self.audit.record_soon(
                "query answered again", state.user, plan.dataset, fingerprint=plan.fingerprint, epsilon=0
            )
        return Result(plan_columns(plan), rows, f"SELECT {len(rows)}", [notice, *notes])

    async def explain(
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
        plan = await self.planned(statement.inner, state, declared)
        dataset = self.policy.datasets[plan.dataset]
        balance = await self.balance(plan, state)
        engine = self.engines.of(plan.dataset)
        version = await asyncio.to_thread(engine.data_version, plan.dataset)
        policy_version = self.policy.answer_version(plan.dataset)
        if plan.bucketing is not None and bucket_values(plan):  # answered when every bucket is stored
            versions = await self._bucket_versions(plan, engine, version)
            keys = list(bucket_keys(plan, params, policy_version, versions)[1].values())
        else:
            keys = [answer_key(plan, params, policy_version, version)]
        found = await asyncio.to_thread(self.ledger.find_answers, keys)
        answered = all(answer is not None for answer in found.values())
        lines = explain(
            plan, dataset, balance.remaining.epsilon, balance.total.epsilon, answered, engine.render(plan)
        )
        return Result([("QUERY PLAN", "text")], [(line,) for line in lines], "EXPLAIN")

    async def balance(self, plan: Plan, state: SessionState) -> Balance:
        """The user's balance on the plan's dataset in the current budget period."""
        terms = Terms.of(self.policy.datasets[plan.dataset].budget, time.time())
        return await asyncio.to_thread(
            self.ledger.balance, plan.dataset, state.user, terms.total, terms.period
        )

    # ---- side effects: holds, detectors, audit ---------------------------------------------------

    async def _apply_holds(self, plan: Plan, state: SessionState, dataset: Dataset) -> None:
        """Refuse or slow down the queries of accounts an attack alert holds (stores.monitor)."""
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
            postgres_text(statement),
            params,
            epsilon,
            epsilon > 0,
            plan.question.render(plan.engine_parameters(params)),  # a bucketed range as its whole buckets
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

    async def _audit(self, kind: str, user: str, dataset: str | None, **detail: Any) -> None:
        if self.audit is not None:
            await asyncio.to_thread(self.audit.record, kind, user, dataset, **detail)

    def _limits(self, state: SessionState) -> Limits:
        return limits_of(state, self.max_statement_seconds)


def limits_of(state: SessionState, max_statement_seconds: float) -> Limits:
    """The session's statement_timeout, never above the server's maximum; and its disconnect check."""
    session_ms = int(state.settings.values.get("statement_timeout") or 0)
    seconds = max_statement_seconds
    if session_ms > 0:
        seconds = min(seconds, session_ms / 1000)
    return Limits(timeout_seconds=seconds if seconds > 0 else None, disconnected=state.disconnected)


def _pending(plan: Plan, dataset: Dataset) -> frozenset[Any]:
    """Buckets of an append-only dataset's time column that are not complete yet (by the server's
    clock, never the data): they are not released."""
    rule = dataset.append_only
    if rule is None or plan.bucketing is None or rule.column != plan.bucketing.column:
        return frozenset()
    complete_until = dt.datetime.now(dt.UTC).replace(tzinfo=None) - rule.lag()
    return frozenset(v for v in bucket_values(plan) if plan.bucketing.span([v])[1] > complete_until)


def _widened_notice(plan: Plan) -> str:
    assert plan.bucketing is not None
    b = plan.bucketing
    return (
        f"the time range on {b.column} was widened to whole buckets: from {b.start:%Y-%m-%d %H:%M:%S} "
        f"up to {b.end:%Y-%m-%d %H:%M:%S} (each bucket is released once, whole)"
    )


def _engine_failed() -> PgError:
    error = InternalError(
        "this question could not be answered; its ε is spent",
        hint="Ask it in another way; asking this one again gives this error at no cost.",
    )
    error.audited = True
    return error


def postgres_text(statement: Statement) -> str:
    """A statement as the detectors' history records it (generated once per parsed statement)."""
    text = statement.memo.get("postgres")
    if text is None:
        assert statement.tree is not None
        text = statement.memo["postgres"] = statement.tree.sql(dialect="postgres")
    return text


def _reads_clock(statement: Statement) -> bool:
    """Whether the statement reads the clock (now(), CURRENT_DATE): decided once per parsed statement."""
    reads = statement.memo.get("clock")
    if reads is None:
        reads = statement.memo["clock"] = statement.tree is not None and uses_clock(statement.tree)
    return reads
