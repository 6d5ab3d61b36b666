"""The PostgreSQL-facing side: wire protocol, sessions, auth, engine and ledger I/O."""
