"""The PostgreSQL-facing side: wire protocol, start-up and auth, sessions, routing, catalog, metrics."""
