"""Timestamps of any input type to UTC microseconds, with why a row has none.

A ``ts`` column may be a zoned timestamp (used as is), a naive timestamp or a date (read in the
configured zone, ``--tz``), or ISO-8601 text with or without an offset. Text is parsed once per
*distinct* text (exports repeat the same times across metrics and patients), into:

* ``us``: int64 µs since the epoch, UTC (0 where there is no time);
* ``flag``: :data:`OK`, or why the row has no usable time — :data:`MISSING` (empty),
  :data:`BAD` (not ISO-8601), :data:`NAIVE` (no offset and no zone configured), or
  :data:`NONEXISTENT` (a local time in the spring daylight-saving gap of the zone).

Ambiguous local times (the repeated autumn hour) take the earlier instant.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from ..schema import TS_DTYPE
from .encode import encode

OK, MISSING, BAD, NAIVE, NONEXISTENT = 0, 1, 2, 3, 4

#: texts read as "no value" in any text column
NULL_TEXT = ("", "NA", "N/A", "null", "NULL", "None", "-")
_TS_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")
_TS_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z")
_OFFSET = r"([+-]\d{2}:?\d{2}|Z)$"


def _localise(naive: pl.Expr, tz: str | None) -> pl.Expr:
    if tz is None:
        return pl.lit(None, dtype=TS_DTYPE)
    return naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null") \
        .dt.convert_time_zone("UTC")


def _naive_flag(ts: pl.Expr, tz: str | None) -> pl.Expr:
    """NAIVE without a zone, NONEXISTENT where localising gave no instant, else OK."""
    if tz is None:
        return pl.lit(NAIVE, pl.UInt8)
    return pl.when(ts.is_null()).then(pl.lit(NONEXISTENT, pl.UInt8)).otherwise(
        pl.lit(OK, pl.UInt8))


def _normalised_text(ts: pl.Expr) -> pl.Expr:
    return (ts.str.strip_chars()
            .str.replace(r"^(\d{4}-\d{2}-\d{2})[ ]", "${1}T")
            .str.replace(r"Z$", "+00:00")
            .str.replace(r"([+-]\d{2})(\d{2})$", "${1}:${2}"))


def _parse_text(values: pl.Series, tz: str | None) -> pl.DataFrame:
    """``us`` and ``flag`` of each distinct text."""
    txt = pl.col("txt")
    df = pl.DataFrame({"raw": values}).with_columns(txt=_normalised_text(pl.col("raw")))
    df = df.with_columns(
        naive=pl.coalesce([txt.str.to_datetime(f, strict=False, time_unit="us")
                           for f in _TS_FORMATS]),
        aware=pl.coalesce([txt.str.to_datetime(f, strict=False, time_unit="us")
                           .dt.convert_time_zone("UTC") for f in _TS_AWARE_FORMATS]),
        off=txt.str.contains(_OFFSET),
    ).with_columns(local=_localise(pl.col("naive"), tz))
    naive, aware, off, local = pl.col("naive"), pl.col("aware"), pl.col("off"), pl.col("local")
    ts = pl.when(off).then(aware).otherwise(local)
    flag = (pl.when(txt.is_null() | txt.is_in(NULL_TEXT)).then(pl.lit(MISSING, pl.UInt8))
            .when(off & aware.is_not_null()).then(pl.lit(OK, pl.UInt8))
            .when(~off & naive.is_not_null()).then(_naive_flag(local, tz))
            .otherwise(pl.lit(BAD, pl.UInt8)))
    return df.select(us=ts.dt.epoch("us").fill_null(0), flag=flag)


def to_utc_us(col: pl.Series, tz: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(us, flag)`` arrays of a ``ts`` column (see the module docstring)."""
    dtype = col.dtype
    if isinstance(dtype, pl.Datetime):
        e = pl.col("ts").cast(pl.Datetime("us", dtype.time_zone))
        if dtype.time_zone is not None:
            ts, flag = e.dt.convert_time_zone("UTC"), pl.lit(OK, pl.UInt8)
        else:
            ts = _localise(e, tz)
            flag = _naive_flag(ts, tz)
    elif dtype == pl.Date:
        ts = _localise(pl.col("ts").cast(pl.Datetime("us")), tz)
        flag = _naive_flag(ts, tz)
    elif dtype == pl.Null:
        n = col.len()
        return np.zeros(n, np.int64), np.full(n, MISSING, np.uint8)
    else:
        enc = encode(col.cast(pl.String))
        parsed = _parse_text(enc.values, tz)
        return (parsed["us"].to_numpy().astype(np.int64)[enc.key],
                parsed["flag"].to_numpy().astype(np.uint8)[enc.key])
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None and col.null_count() == 0:
        # the common case, zoned times without a gap: the physical values are UTC already
        us = col.dt.cast_time_unit("us").to_physical().rechunk().to_numpy()
        return us.astype(np.int64, copy=False), np.zeros(col.len(), np.uint8)
    df = pl.DataFrame({"ts": col}).select(
        us=ts.dt.epoch("us").fill_null(0),
        flag=pl.when(pl.col("ts").is_null()).then(pl.lit(MISSING, pl.UInt8)).otherwise(flag))
    return (df["us"].to_numpy().astype(np.int64, copy=False),
            df["flag"].to_numpy().astype(np.uint8, copy=False))
