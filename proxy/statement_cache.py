"""Parsed statements remembered by their text, so a repeated question skips parsing and planning.

A plain-text client (psql, most BI tools) sends the same query text again on every refresh; so does a
driver re-preparing an unnamed statement. `parsed` keeps the STATEMENT_CACHE_SIZE most recent texts'
Statements; each Statement keeps the plans made for it (keyed by everything a plan depends on: the
policy version, the user and role, the session's settings, declared parameter types, the clock for
queries that read it), so a repeated question reaches the answer cache without parse or plan.
Statements are never changed in place once parsed (planning works on a copy), so sessions may share
them. Refusals are not remembered: a refused text is parsed again each time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from proxy import metrics
from rewriter.parse import Statement, split_statements

STATEMENT_CACHE_SIZE = 1024

_parsed: OrderedDict[str, tuple[Statement, ...]] = OrderedDict()
_lock = threading.Lock()


def known(sql: str) -> list[Statement] | None:
    """The text's statements if it was parsed recently (cheap enough for the event loop), else None."""
    with _lock:
        found = _parsed.get(sql)
        if found is not None:
            _parsed.move_to_end(sql)
    if found is None:
        return None
    metrics.STATEMENT_CACHE.labels("hit").inc()
    return list(found)


def parsed(sql: str) -> list[Statement]:
    """`rewriter.parse.split_statements`, remembered by the exact text."""
    found = known(sql)
    if found is not None:
        return found
    statements = split_statements(sql)
    metrics.STATEMENT_CACHE.labels("miss").inc()
    with _lock:
        _parsed[sql] = tuple(statements)
        while len(_parsed) > STATEMENT_CACHE_SIZE:
            _parsed.popitem(last=False)
    return statements
