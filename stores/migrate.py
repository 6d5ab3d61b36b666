"""Copy a whole ledger database (budgets, debits, answers, secrets, audit chain, monitor history) into
another, e.g. from a SQLite file to the PostgreSQL store replicas share. Rows are copied as they are,
ids included, so the audit chain still verifies; the target must be empty."""

from __future__ import annotations

from dataclasses import dataclass

from stores import audit, ledger, monitor
from stores.database import Database

TABLES: dict[str, tuple[str, ...]] = {
    "accounts": ("dataset", "user_name", "period", "spent_micro"),
    "secrets": ("name", "value"),
    "answers": ("key", "at", "dataset", "user_name", "answer"),
    "debits": ("id", "at", "dataset", "user_name", "cost_micro", "spent_after_micro", "total_micro", "period",
               "events", "fingerprint"),
    "audit": ("id", "at", "kind", "user_name", "dataset", "detail", "prev_hash", "hash"),
    "audit_head": ("one", "hash", "count"),
    "released": ("id", "at", "dataset", "user_name", "statement", "params", "epsilon", "fresh", "question",
                 "sizes", "size_sd", "shown", "withheld"),
    "alerts": ("id", "at", "kind", "dataset", "users", "action", "until", "summary", "queries", "signature",
               "cleared_at"),
}  # fmt: skip
WITH_IDS = ("debits", "audit", "released", "alerts")


class TargetNotEmpty(ValueError):
    pass


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]


def migrate(source: Database, target: Database) -> Copied:
    schema = ledger.SCHEMA + audit.SCHEMA + monitor.SCHEMA
    source.create(schema)
    target.create(schema)
    copied: dict[str, int] = {}
    with target.write() as tx:
        for table in TABLES:
            if tx.one(f"SELECT 1 FROM {table} LIMIT 1"):
                raise TargetNotEmpty(f"the target already has rows in {table}: migrate into an empty ledger")
        for table, columns in TABLES.items():
            names = ", ".join(columns)
            rows = source.query(f"SELECT {names} FROM {table}")
            marks = ", ".join("?" for _ in columns)
            for row in rows:
                tx.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", row)
            copied[table] = len(rows)
        if target.kind == "postgresql":  # new ids continue after the copied ones
            for table in WITH_IDS:
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                tx.execute(f"SELECT setval({sequence}, COALESCE(MAX(id), 0) + 1, false) FROM {table}")
    return Copied(copied)
