"""One type vocabulary: the policy's column types and how PostgreSQL, DuckDB and sqlglot spell them.

The wire layer maps PostgreSQL names to OIDs (proxy.wire.types); everything above it says `PgType`.

>>> POLICY_TO_PG["double"], PG_TO_DUCKDB["float8"], pg_type_of_duckdb("DECIMAL(18,3)")
('float8', 'DOUBLE', 'numeric')
>>> pg_type_of_duckdb("INTEGER[]")
'_int4'
"""

from __future__ import annotations

from typing import Literal

# PostgreSQL type names used for results and parameters.
PgType = Literal["int8", "int4", "float8", "text", "bool", "date", "timestamp", "numeric"]

POLICY_TO_PG: dict[str, PgType] = {
    "bigint": "int8",
    "integer": "int4",
    "double": "float8",
    "text": "text",
    "date": "date",
    "boolean": "bool",
    "timestamp": "timestamp",
}

# The SQL type each PgType is computed in by the engines (sqlglot transpiles the names per dialect).
PG_TO_DUCKDB: dict[str, str] = {
    "int8": "BIGINT", "int4": "INTEGER", "float8": "DOUBLE", "numeric": "DOUBLE", "text": "VARCHAR",
    "bool": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP",
}  # fmt: skip

_DUCKDB_TO_PG = {"INTEGER": "int4", "BIGINT": "int8", "SMALLINT": "int2", "TINYINT": "int2",
                 "UINTEGER": "int8", "USMALLINT": "int4", "UTINYINT": "int2", "DOUBLE": "float8",
                 "FLOAT": "float4", "BOOLEAN": "bool", "VARCHAR": "text", "DATE": "date",
                 "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamptz", "TIME": "time",
                 "INTERVAL": "interval", "UUID": "uuid", "BLOB": "bytea", "HUGEINT": "numeric"}  # fmt: skip
_ARRAYS = {"int2": "_int2", "int4": "_int4", "int8": "_int8", "text": "_text", "bool": "_bool",
           "float8": "_float8", "float4": "_float4", "date": "_date", "numeric": "_numeric"}  # fmt: skip


def pg_type_of_duckdb(duckdb_type: str) -> str:
    """The PostgreSQL type name a DuckDB result column is sent as."""
    if duckdb_type.endswith("[]"):
        return _ARRAYS.get(pg_type_of_duckdb(duckdb_type[:-2]), "_text")
    if duckdb_type.startswith("DECIMAL"):
        return "numeric"
    return _DUCKDB_TO_PG.get(duckdb_type, "text")
