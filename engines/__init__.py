"""Where the data lives: engines that run a plan's SQL, interruptibly, and return exact aggregates."""
