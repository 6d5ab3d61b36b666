"""Pure sqlglot rules: parse → validate → plan → clipped engine SQL. No I/O."""
