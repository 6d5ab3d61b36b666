"""Durable state: the privacy ledger (the only place budget is charged), audit chain, answers, monitor."""
