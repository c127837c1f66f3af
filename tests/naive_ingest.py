"""Reference implementation of ingest: the obvious polars version, row reasons as one
``when/then`` chain and duplicates found by a ``group_by``.

``engine.ingest`` computes the same result through dictionary codes and numba kernels; the
property tests of ``tests/test_ingest_reference.py`` compare the two on random dirty input. This
was veille's ingest before the pipeline of stages; it is kept as the definition.

Every input row ends in exactly one place:

* ``clean``: one row per (patient_id, metric, ts), canonical metric and unit, sorted by
  (patient_id, metric, ts);
* ``quarantine``: the raw row (as text), its 1-based row number in the input and one reason;
* collapsed: an exact duplicate of a clean row (same patient, metric, time and value).

so that ``rows_in == rows_used + rows_quarantined + duplicates_collapsed`` — checked on every run
(:meth:`Reconciliation.check`) and reported by the command line.

A *file-level* problem (missing column, wrong column type, unreadable or empty file) is an
:class:`~engine.errors.InputError` that names the file and the column; a *row-level* problem never
raises.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from engine.errors import InputError
from engine.schema import METRICS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, TELEMETRY_SCHEMA, TS_DTYPE
# the definitions (reasons, their texts, the row accounting) are engine's; the logic is this
# file's own
from engine.ingest import (EARLIEST, FUTURE_TOLERANCE, QUARANTINE_SCHEMA, REASONS,
                           IngestResult, Reconciliation, _check_columns, adapt_columns,
                           check_zone)
from engine.sources import read_table

_NULL_TEXT = ("", "NA", "N/A", "null", "NULL", "None", "-")


def ingest(source, *, tz: str | None = None, now: dt.datetime | None = None,
           name: str | None = None, columns: dict[str, str] | None = None,
           metric: str | None = None, unit: str | None = None) -> IngestResult:
    """Read and check telemetry; return clean rows, quarantined rows and the row accounting.

    Parameters
    ----------
    source : path, ``file.duckdb:table``, polars/pyarrow/pandas frame
        Long-format telemetry.
    tz : str, optional
        IANA zone (e.g. ``"Europe/Paris"``) in which naive timestamps are read. Without it a naive
        timestamp is quarantined (``naive_timestamp``): guessing a zone would shift every alert.
    now : datetime, optional
        Reference time for ``future_timestamp`` (default: the current UTC time).
    columns : dict, optional
        Renames applied first, ``{"id": "patient_id", "time": "ts", "gl": "value"}``, for
        exports whose columns have other names.
    metric, unit : str, optional
        The metric (and unit) of every row of a single-metric export without a ``metric``
        (``unit``) column, e.g. a CGM file: ``metric="glucose", unit="mg/dL"``.

    Examples
    --------
    >>> import polars as pl
    >>> raw = pl.DataFrame({"patient_id": ["P1", "P1"], "ts": ["2026-01-05T08:00Z"] * 2,
    ...                     "metric": ["weight", "8867-4"], "value": ["81.5", "72"]})
    >>> ingest(raw).report.summary()
    'rows in 2 = used 2 + quarantined 0 + duplicates collapsed 0'
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "<frame>")
    raw = adapt_columns(read_table(source), label, columns=columns, metric=metric, unit=unit)
    return ingest_frame(raw, tz=tz, now=now, name=label)


def ingest_frame(raw: pl.DataFrame, *, tz: str | None = None, now: dt.datetime | None = None,
                 name: str = "<frame>", patients: pl.DataFrame | None = None,
                 earliest: dt.datetime = EARLIEST) -> IngestResult:
    """:func:`ingest` on a frame already in memory."""
    _check_columns(raw, name)          # file-level checks: engine's own, not compared here
    if raw.height == 0:
        raise InputError("has the telemetry columns but no rows: nothing to score. An empty "
                         "export usually means the upstream extraction failed.", path=name)
    if tz is not None:
        check_zone(tz)
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        raise InputError("the reference time 'now' must carry a time zone", path=name)

    df = _typed(raw, name, tz)
    df = _with_reasons(df, now, patients, earliest)
    ok = df.filter(pl.col("reason").is_null())
    # duplicates are judged on the converted value to 0.01 of the canonical unit (finer than any
    # device reports): 81.2 kg and 179.015 lb are the same reading
    key = ["patient_id", "metric", "ts"]
    groups = ok.group_by(key).agg(pl.col("value").round(2).n_unique().alias("_nvals"),
                                  pl.len().alias("_n"))
    ok = ok.join(groups, on=key, how="left")
    conflicting = ok.filter(pl.col("_nvals") > 1).with_columns(
        reason=pl.lit("conflicting_duplicate"),
        detail=pl.format("{} rows share this patient, metric and time with {} different values",
                         pl.col("_n"), pl.col("_nvals")))
    single = ok.filter(pl.col("_nvals") == 1)
    clean = (single.sort([*key, "_row"]).unique(subset=key, keep="first", maintain_order=True)
             .select(list(TELEMETRY_SCHEMA)))
    collapsed = single.height - clean.height

    bad = pl.concat([df.filter(pl.col("reason").is_not_null()), conflicting.drop("_nvals", "_n")],
                    how="vertical_relaxed")
    quarantine = _quarantine_frame(bad)
    by_reason = dict(quarantine.group_by("reason").len().sort("reason").iter_rows())
    report = Reconciliation(source=name, rows_in=raw.height, rows_used=clean.height,
                            rows_quarantined=quarantine.height, duplicates_collapsed=collapsed,
                            by_reason=by_reason, patients=clean["patient_id"].n_unique())
    return IngestResult(clean=clean, quarantine=quarantine, report=report.check())


# --------------------------------------------------------------------------------------------
# typing and row reasons


def _as_text(col: str, raw: pl.DataFrame) -> pl.Expr:
    if col not in raw.columns:
        return pl.lit(None, dtype=pl.String).alias(col)
    e = pl.col(col)
    if isinstance(raw[col].dtype, pl.Datetime):
        return e.dt.to_string("iso").alias(col)
    return e.cast(pl.String).alias(col)


def _typed(raw: pl.DataFrame, name: str, tz: str | None) -> pl.DataFrame:
    """Raw text of every column (for the quarantine) beside parsed, converted columns."""
    text_cols = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]
    df = raw.with_row_index("_row", offset=1).select(
        pl.col("_row").cast(pl.Int64),
        *[_as_text(c, raw).alias(f"_raw_{c}") for c in text_cols],
        pl.col("ts").alias("_ts_in"),
        pl.lit(tz is not None).alias("_tz_given"),
    )
    df = _with_timestamps(df, raw["ts"].dtype, tz)
    pid = pl.col("_raw_patient_id").str.strip_chars()
    metric_txt = pl.col("_raw_metric").str.strip_chars()
    metric = (metric_txt.str.replace(r"^(?i:loinc:|http://loinc\.org\|)", "")
              .replace_strict(_METRIC_LOOKUP, default=None, return_dtype=pl.String))
    value_txt = pl.col("_raw_value").str.strip_chars()
    value_num = (raw["value"].dtype.is_numeric()
                 if "value" in raw.columns else False)
    if value_num:
        value = pl.col("_raw_value").cast(pl.Float64, strict=False)
    else:
        # a lone decimal comma is common in French device exports: "36,8"
        value = (value_txt.str.replace(r"^([+-]?\d+),(\d+)$", "${1}.${2}")
                 .cast(pl.Float64, strict=False))
    unit_txt = pl.col("_raw_unit").str.strip_chars()
    return df.with_columns(
        patient_id=pl.when(pid.is_null() | (pid == "")).then(None).otherwise(pid),
        metric=metric,
        _value_missing=value_txt.is_null() | value_txt.is_in(_NULL_TEXT),
        _value=value,
        _unit=pl.when(unit_txt.is_null() | (unit_txt == "")).then(None).otherwise(unit_txt),
        source=pl.col("_raw_source"),
    )


_METRIC_LOOKUP = {**{m: m for m in METRICS}, **{c: m.name for m in METRICS.values()
                                                  for c in m.loinc}}
_TS_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")
_TS_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z")
_OFFSET = r"([+-]\d{2}:?\d{2}|Z)$"


def _normalised_ts_text(ts: pl.Expr) -> pl.Expr:
    return (ts.cast(pl.String).str.strip_chars()
            .str.replace(r"^(\d{4}-\d{2}-\d{2})[ ]", "${1}T")
            .str.replace(r"Z$", "+00:00")
            .str.replace(r"([+-]\d{2})(\d{2})$", "${1}:${2}"))


def _with_timestamps(df: pl.DataFrame, dtype: pl.DataType, tz: str | None) -> pl.DataFrame:
    """Replace ``_ts_in`` by ``_ts`` (UTC; null where missing, unparseable, naive without a zone
    or nonexistent) and ``_ts_flag`` (why: 'missing', 'naive', 'parsed' or 'bad').

    Text is parsed once, into helper columns that both results read.
    """
    t = pl.col("_ts_in")
    if isinstance(dtype, pl.Datetime):
        e = t.cast(pl.Datetime("us", dtype.time_zone))
        ts = e.dt.convert_time_zone("UTC") if dtype.time_zone is not None else _localise(e, tz)
        flag = pl.when(t.is_null()).then(pl.lit("missing")) \
            .otherwise(pl.lit("parsed" if dtype.time_zone else "naive"))
    elif dtype == pl.Date:
        ts = _localise(t.cast(pl.Datetime("us")), tz)
        flag = pl.when(t.is_null()).then(pl.lit("missing")).otherwise(pl.lit("naive"))
    elif dtype == pl.Null:
        ts, flag = pl.lit(None, dtype=TS_DTYPE), pl.lit("missing")
    else:
        df = df.with_columns(_txt=_normalised_ts_text(t))
        txt = pl.col("_txt")
        df = df.with_columns(
            _naive=pl.coalesce([txt.str.to_datetime(f, strict=False, time_unit="us")
                                for f in _TS_FORMATS]),
            _aware=pl.coalesce([txt.str.to_datetime(f, strict=False, time_unit="us")
                                .dt.convert_time_zone("UTC") for f in _TS_AWARE_FORMATS]),
            _off=txt.str.contains(_OFFSET),
        )
        naive, aware, off = pl.col("_naive"), pl.col("_aware"), pl.col("_off")
        ts = pl.when(off).then(aware).otherwise(_localise(naive, tz))
        flag = (pl.when(txt.is_null() | txt.is_in(_NULL_TEXT)).then(pl.lit("missing"))
                .when(off & aware.is_not_null()).then(pl.lit("parsed"))
                .when(~off & naive.is_not_null()).then(pl.lit("naive"))
                .otherwise(pl.lit("bad")))
    helpers = [c for c in ("_ts_in", "_txt", "_naive", "_aware", "_off") if c in df.columns]
    return df.with_columns(_ts=ts, _ts_flag=flag).drop(helpers)


def _localise(naive: pl.Expr, tz: str | None) -> pl.Expr:
    if tz is None:
        return pl.lit(None, dtype=TS_DTYPE)
    # Ambiguous wall-clock times (the repeated hour in autumn) take the earlier instant.
    return naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null") \
        .dt.convert_time_zone("UTC")


def _unit_tables() -> tuple[dict, dict, dict]:
    """(metric, unit) -> scale, offset; metric -> canonical unit; metric -> (low, high, integer)."""
    scale, offset = {}, {}
    for m in METRICS.values():
        for u, (a, b) in m.units.items():
            scale[f"{m.name}|{u}"] = a
            offset[f"{m.name}|{u}"] = b
    return scale, offset, {m.name: m.unit for m in METRICS.values()}


_SCALE, _OFFSET_U, _CANON_UNIT = _unit_tables()
_LOW = {m.name: float(m.low) for m in METRICS.values()}
_HIGH = {m.name: float(m.high) for m in METRICS.values()}
_INTEGER = {m.name: m.integer for m in METRICS.values()}


def _with_reasons(df: pl.DataFrame, now: dt.datetime, patients, earliest) -> pl.DataFrame:
    m = pl.col("metric")
    unit_key = pl.concat_str([m, pl.col("_unit")], separator="|")
    scale = pl.when(pl.col("_unit").is_null()).then(pl.lit(1.0)).otherwise(
        unit_key.replace_strict(_SCALE, default=None, return_dtype=pl.Float64))
    offs = pl.when(pl.col("_unit").is_null()).then(pl.lit(0.0)).otherwise(
        unit_key.replace_strict(_OFFSET_U, default=None, return_dtype=pl.Float64))
    low = m.replace_strict(_LOW, default=None, return_dtype=pl.Float64)
    high = m.replace_strict(_HIGH, default=None, return_dtype=pl.Float64)
    integer = m.replace_strict(_INTEGER, default=False, return_dtype=pl.Boolean)
    df = df.with_columns(
        value=pl.col("_value") * scale + offs,
        _scale=scale,
        unit=m.replace_strict(_CANON_UNIT, default=None, return_dtype=pl.String),
        ts=pl.col("_ts"),
    )
    v = pl.col("value")
    now_limit = pl.lit(now + FUTURE_TOLERANCE).cast(TS_DTYPE)
    flag = pl.col("_ts_flag")
    reason = (
        pl.when(pl.col("patient_id").is_null()).then(pl.lit("missing_patient_id"))
        .when(pl.lit(patients is not None) & ~pl.col("patient_id").is_in(
            (patients["patient_id"] if patients is not None else pl.Series([], dtype=pl.String))
            .implode())).then(pl.lit("unknown_patient"))
        .when(flag == "missing").then(pl.lit("missing_timestamp"))
        .when(flag == "bad").then(pl.lit("unparseable_timestamp"))
        .when((flag == "naive") & pl.col("ts").is_null()
              & pl.col("_tz_given")).then(pl.lit("nonexistent_local_time"))
        .when(pl.col("ts").is_null() & (flag == "naive")).then(pl.lit("naive_timestamp"))
        .when(pl.col("ts").is_null()).then(pl.lit("unparseable_timestamp"))
        .when(m.is_null()).then(pl.lit("unknown_metric"))
        .when(pl.col("_value_missing")).then(pl.lit("missing_value"))
        .when(pl.col("_value").is_null()).then(pl.lit("unparseable_value"))
        .when(~pl.col("_value").is_finite()).then(pl.lit("non_finite_value"))
        .when(pl.col("_scale").is_null()).then(pl.lit("unconvertible_unit"))
        .when((v < low) | (v > high) | (integer & (v != v.round(0))))
        .then(pl.lit("implausible_value"))
        .when(pl.col("ts") < pl.lit(earliest).cast(TS_DTYPE)).then(pl.lit("timestamp_too_early"))
        .when(pl.col("ts") > now_limit).then(pl.lit("future_timestamp"))
        .otherwise(None)
    )
    detail = (
        pl.when(pl.col("_reason") == "unknown_metric").then(
            pl.format("'{}' is not a canonical metric or known LOINC code",
                      pl.col("_raw_metric")))
        .when(pl.col("_reason") == "unconvertible_unit").then(
            pl.format("'{}' cannot be converted to {} for {}", pl.col("_unit"), pl.col("unit"),
                      m))
        .when(pl.col("_reason") == "implausible_value").then(
            pl.format("{} {} is outside {}..{}{}", v.round(4), pl.col("unit"), low, high,
                      pl.when(integer).then(pl.lit(" (whole numbers only)")).otherwise(
                          pl.lit(""))))
        .when(pl.col("_reason") == "unknown_patient").then(
            pl.format("patient '{}' has no row in the patients table", pl.col("patient_id")))
        .when(pl.col("_reason") == "timestamp_too_early").then(
            pl.format("{} is before the earliest plausible date {} (a device clock reset?)",
                      pl.col("ts"), pl.lit(earliest.isoformat())))
        .when(pl.col("_reason") == "future_timestamp").then(
            pl.format("{} is after the run time {}", pl.col("ts"), pl.lit(now.isoformat())))
        .when(pl.col("_reason").is_not_null()).then(
            pl.col("_reason").replace_strict(REASONS, default=None, return_dtype=pl.String))
        .otherwise(None)
    )
    return df.with_columns(_reason=reason).with_columns(reason=pl.col("_reason"),
                                                        detail=detail)


def _quarantine_frame(bad: pl.DataFrame) -> pl.DataFrame:
    if bad.height == 0:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    return bad.select(
        pl.col("_row").alias("row"),
        *[pl.col(f"_raw_{c}").alias(c) for c in ("patient_id", "ts", "metric", "value", "unit",
                                                 "source")],
        "reason", "detail",
    ).sort("row").cast(QUARANTINE_SCHEMA)
