"""The DP core: budget types, noise mechanisms, confidence intervals and the durable ledger."""
