"""Pure DP math: budget types, noise mechanisms, accounting, intervals, post-processing. No I/O."""
