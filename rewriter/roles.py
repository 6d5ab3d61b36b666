"""The roles a policy user or a token can have, and what each may do: the one place they are named.

>>> sorted(ROLES)
['admin', 'analyst', 'auditor', 'ingest']
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["admin", "analyst", "auditor", "ingest"]
ROLES: frozenset[str] = frozenset(get_args(Role))
READER_ROLES: frozenset[str] = frozenset({"admin", "analyst"})  # may query datasets
AUDIT_ROLES: frozenset[str] = frozenset({"admin", "auditor"})  # read every row of the ledger and audit views
INGEST_ROLES: frozenset[str] = frozenset({"admin", "ingest"})  # may COPY / INSERT / DELETE activity events
