"""Catalog emulation: PostgreSQL's pg_catalog and information_schema, built from policy metadata.

Catalog queries and statements that read no data run on a separate, data-less DuckDB that holds only
these tables (public metadata) and the `pg_*` functions clients call, so no private value can reach
them. Row counts and table sizes are never exposed (reltuples = -1, sizes 0).
"""
