"""Shared machinery of the bedside charts (NEWS2, MEWS, qSOFA, SIRS): input checks, rounding to a
chart's printed resolution, banded sub-scores, and the complete / partial / total columns.

Every score here follows one null rule: a missing reading gives a null sub-score, never the
"normal" band, and a total is only reported when every sub-score is known.
"""
from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ..errors import InputError, SpecError

#: how readings are brought to a chart's printed resolution before banding
ROUNDING = ("half_up", "half_even", "none")

#: ACVPU letters and their telemetry codes (engine.schema METRICS["consciousness"])
ACVPU = {"A": 0, "C": 1, "V": 2, "P": 3, "U": 4}


def check_choice(value: object, allowed: Sequence[str], param: str, fn: str) -> str:
    """Validate a string option; the message follows the house constraint wording."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise SpecError(f"The '{param}' parameter of {fn} must be one of {choices}. "
                        f"Got {value!r} instead.")
    return value  # type: ignore[return-value]


def check_number(value: object, param: str, fn: str, *, positive: bool = False) -> float:
    """Validate a numeric threshold parameter (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise SpecError(f"The '{param}' parameter of {fn} must be a number. Got {value!r} instead.")
    if positive and value <= 0:
        raise SpecError(f"The '{param}' parameter of {fn} must be a positive number. "
                        f"Got {value!r} instead.")
    return float(value)


def check_cuts(cuts: object, n: int, param: str, fn: str) -> tuple[float, ...]:
    """Validate band edges: ``n`` numbers in strictly increasing order."""
    ok = (isinstance(cuts, (tuple, list)) and len(cuts) == n
          and all(isinstance(c, (int, float)) and not isinstance(c, bool) and c == c for c in cuts)
          and all(a < b for a, b in zip(cuts, cuts[1:])))
    if not ok:
        raise SpecError(f"The '{param}' parameter of {fn} must be {n} numbers in increasing "
                        f"order. Got {cuts!r} instead.")
    return tuple(float(c) for c in cuts)


def round_to(x: pl.Expr, decimals: int, rounding: str) -> pl.Expr:
    """Round ``x`` to ``decimals`` places: ``half_up`` (38.05 → 38.1, 90.5 → 91), ``half_even``
    (banker's: 90.5 → 90) or ``none``.

    The scaled value is first snapped to 1e-6 so that a reading typed as 38.05 (stored in binary
    as 38.04999…) is treated as the half it was meant to be; readings carry far fewer digits.
    """
    if rounding == "none":
        return x
    scale = float(10 ** decimals)
    snapped = (x * scale).round(6)
    if rounding == "half_up":
        return (snapped + 0.5).floor() / scale
    return snapped.round(0, mode="half_to_even") / scale


def banded(x: pl.Expr, cuts: Sequence[float], points: Sequence[int], *,
           closed: str = "right") -> pl.Expr:
    """Points of the band ``x`` falls in; null when ``x`` is null.

    Bands are ``(-inf, cuts[0]]``, ``(cuts[0], cuts[1]]``, … ``(cuts[-1], inf)`` scoring
    ``points[0]``, …, ``points[-1]``; with ``closed="left"`` the edges belong to the upper band
    (``x < cut``). Bands are contiguous, so a reading between two printed values always scores.
    """
    assert len(points) == len(cuts) + 1
    chain = pl.when(x.is_null()).then(pl.lit(None, pl.Int32))
    for cut, pts in zip(cuts, points):
        below = x <= cut if closed == "right" else x < cut
        chain = chain.when(below).then(pl.lit(pts, pl.Int32))
    return chain.otherwise(pl.lit(points[-1], pl.Int32))


def require_columns(frame: object, columns: Sequence[str], fn: str) -> pl.DataFrame:
    """Check ``frame`` is a polars DataFrame holding ``columns``; name every missing one."""
    if not isinstance(frame, pl.DataFrame):
        raise InputError(f"{fn} takes a polars DataFrame. Got {type(frame).__name__} instead.")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{fn} needs the input column(s) {', '.join(missing)} "
                         f"(a missing reading is a null in the column, not an absent column).",
                         column=missing[0])
    return frame


def numeric(frame: pl.DataFrame, column: str, fn: str, *,
            allowed: Sequence[float] | None = None) -> pl.Expr:
    """The column as Float64 with NaN read as missing; optionally restricted to ``allowed``."""
    dtype = frame.schema[column]
    flag = allowed is not None and dtype == pl.Boolean  # a 0/1 flag may come as a boolean
    if not (dtype.is_numeric() or dtype == pl.Null or flag):
        raise InputError(f"{fn} needs a numeric column; found {dtype}.", column=column)
    expr = pl.col(column).cast(pl.Float64).fill_nan(None)
    if allowed is not None:
        bad = frame.select(expr.filter(expr.is_not_null() & ~expr.is_in(list(allowed)))
                           .unique().sort().head(5)).to_series().to_list()
        if bad:
            raise InputError(f"{fn} accepts only {', '.join(f'{a:g}' for a in allowed)} "
                             f"(or null); found {', '.join(f'{b:g}' for b in bad)}.",
                             column=column)
    return expr


def consciousness_code(frame: pl.DataFrame, column: str, fn: str) -> pl.Expr:
    """ACVPU as the telemetry code 0..4 (0 A, 1 C new confusion, 2 V, 3 P, 4 U), Float64.

    Accepts the letters (any case, surrounding spaces ignored) or the numeric codes.
    """
    dtype = frame.schema[column]
    if dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum:
        text = pl.col(column).cast(pl.String).str.strip_chars().str.to_uppercase()
        bad = frame.select(text.filter(text.is_not_null() & ~text.is_in(list(ACVPU)))
                           .unique().sort().head(5)).to_series().to_list()
        if bad:
            raise InputError(f"{fn} reads consciousness as ACVPU letters A, C, V, P, U or codes "
                             f"0..4; found {', '.join(repr(b) for b in bad)}.", column=column)
        return text.replace_strict(ACVPU, default=None, return_dtype=pl.Float64)
    return numeric(frame, column, fn, allowed=tuple(float(v) for v in ACVPU.values()))


def totals(prefix: str, subscores: Sequence[str]) -> list[pl.Expr]:
    """``<prefix>_partial`` (sum of the known sub-scores), ``<prefix>_complete`` (all known) and
    ``<prefix>`` (the total, null unless complete) from the sub-score columns."""
    cols = [pl.col(s) for s in subscores]
    complete = pl.all_horizontal([c.is_not_null() for c in cols])
    partial = pl.sum_horizontal(cols, ignore_nulls=True).cast(pl.Int32)
    return [
        partial.alias(f"{prefix}_partial"),
        complete.alias(f"{prefix}_complete"),
        pl.when(complete).then(partial).otherwise(None).cast(pl.Int32).alias(prefix),
    ]


def at_least(prefix: str, threshold: float) -> pl.Expr:
    """Whether the total reaches ``threshold``, in three-valued logic: true as soon as the known
    sub-scores reach it (a missing one can only add points), false only when the score is
    complete and below it, null otherwise."""
    return (pl.when(pl.col(f"{prefix}_partial") >= threshold).then(True)
            .when(pl.col(f"{prefix}_complete")).then(False)
            .otherwise(None))
