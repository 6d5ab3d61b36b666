"""Sums of clipped values as exact integer arithmetic, so the declared sensitivity holds.

A floating-point SUM depends on the order rows are added in, and one extra row can move it by more
than its clip bound (Casacuberta et al., "Widespread Underestimation of Sensitivity in Differentially
Private Libraries and How to Fix It", 2022). So each clipped value is rounded to a multiple of a
resolution r = 2^-f (half-up, as floor(x·2^f + 0.5): engines' `round` break ties differently),
chosen per column so that every scaled value fits in 2^60, and summed as a
BIGINT (DuckDB adds BIGINTs into a 128-bit HUGEINT: exact, in any order, for any row count this
engine can hold). The exact integer sum is turned into one double at the end; that last rounding
moves a sum of N rows by at most N·2^-51 of one row's bound, covered by `FINAL_ROUNDING` for tables
of up to 2^40 rows.

>>> exponent(250000.0), resolution(250000.0) == 2.0 ** -42
(42, True)
"""

from __future__ import annotations

import math

TOP_BITS = 60  # |scaled value| <= 2^60 < 2^63: every per-row BIGINT and difference fits
FINAL_ROUNDING = 2.0**-11  # relative slack on sum sensitivities for the final integer -> double rounding


def exponent(max_abs: float) -> int:
    """f such that max_abs · 2^f <= 2^60."""
    return TOP_BITS - math.ceil(math.log2(max(max_abs, 2.0**-30)))


def resolution(max_abs: float) -> float:
    """r = 2^-f: the step clipped values are rounded to before they are summed."""
    return 2.0 ** -exponent(max_abs)
