"""Ingest, the first stage and the only one that validates: contract check, unit normalisation,
plausibility limits, quarantine.

Every input row ends in exactly one place:

* ``clean``: one row per (patient_id, metric, ts), canonical metric and unit, sorted by
  (patient_id, metric, ts);
* ``quarantine``: the raw row (as text), its 1-based row number in the input and one reason;
* collapsed: an exact duplicate of a clean row (same patient, metric, time and value).

so that ``rows_in == rows_used + rows_quarantined + duplicates_collapsed`` — checked on every run
(:meth:`Reconciliation.check`) and reported by the command line. Later stages trust the clean
frame and its :class:`SeriesIndex` and never check them again.

A *file-level* problem (missing column, wrong column type, unreadable or empty file) is an
:class:`~engine.errors.InputError` that names the file and the column; a *row-level* problem never
raises.

How it is fast: each text column is dictionary-encoded (:mod:`.encode`), so ids, metric names,
LOINC codes, units and timestamps are checked once per distinct text; one numba pass
(:mod:`.kernels`) gives every row its reason and converted value; rows already in order are not
sorted again, and the clean columns are gathered from the codes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ..arrow_buffers import empty
from ..errors import InputError
from ..schema import (EARLIEST, METRICS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, TELEMETRY_SCHEMA,
                      TS_DTYPE)
from ..sources import Rejects, read_table_rows
from . import kernels as K
from . import times
from .encode import Encoded, encode_columns, lookup
from ..schema import METRIC_NAMES
from .index import SeriesIndex

#: Quarantine reasons, in the order they are checked (the first that applies is recorded).
REASONS: dict[str, str] = {
    "missing_patient_id": "patient_id is empty",
    "unknown_patient": "patient_id is not in the patients table",
    "missing_timestamp": "ts is empty",
    "unparseable_timestamp": "ts is not an ISO-8601 date-time",
    "naive_timestamp": "ts has no time zone and no zone was configured (--tz)",
    "nonexistent_local_time": "ts is a local time that does not exist (daylight-saving gap)",
    "unknown_metric": "metric is neither a canonical name nor a known LOINC code",
    "missing_value": "value is empty",
    "unparseable_value": "value is not a number",
    "non_finite_value": "value is NaN or infinite",
    "unconvertible_unit": "unit cannot be converted to the metric's canonical unit",
    "implausible_value": "value is outside the metric's plausibility limits",
    "timestamp_too_early": "ts is before the earliest plausible date (a device clock reset?)",
    "future_timestamp": "ts is in the future",
    "conflicting_duplicate": "another row has the same patient, metric and time but another value",
    "malformed_row": "the line cannot be a row of the file (not UTF-8 text, or another number "
                     "of fields than the header)",
}
#: reason code (engine.ingest.kernels) -> name
_REASON_NAMES = ["", "missing_patient_id", "unknown_patient", "missing_timestamp",
                 "unparseable_timestamp", "naive_timestamp", "nonexistent_local_time",
                 "unknown_metric", "missing_value", "unparseable_value", "non_finite_value",
                 "unconvertible_unit", "implausible_value", "timestamp_too_early",
                 "future_timestamp", "conflicting_duplicate", "malformed_row"]
assert set(_REASON_NAMES[1:]) == set(REASONS)

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "patient_id": pl.String(),
    "ts": pl.String(),
    "metric": pl.String(),
    "value": pl.String(),
    "unit": pl.String(),
    "source": pl.String(),
    "reason": pl.String(),
    "detail": pl.String(),
}

#: clock skew tolerated before a timestamp counts as "in the future"
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class Reconciliation:
    """Row accounting of one ingest: the invariant ``rows_in == used + quarantined + collapsed``.

    ``rows_after_as_of`` counts the clean rows later than the run's ``as_of``: they are checked
    and kept out of this run (a later run uses them), and counted apart from the used rows.
    """

    source: str
    rows_in: int
    rows_used: int
    rows_quarantined: int
    duplicates_collapsed: int
    by_reason: dict[str, int] = field(default_factory=dict)
    patients: int = 0
    rows_after_as_of: int = 0

    @property
    def balanced(self) -> bool:
        return self.rows_in == (self.rows_used + self.rows_quarantined
                                + self.duplicates_collapsed + self.rows_after_as_of)

    def check(self) -> "Reconciliation":
        if not self.balanced:  # a bug in veille, never bad input
            raise AssertionError(f"row accounting does not reconcile: {self.summary()}")
        return self

    def summary(self) -> str:
        mark = "=" if self.balanced else "!="
        text = (f"rows in {self.rows_in:,} {mark} used {self.rows_used:,} + quarantined "
                f"{self.rows_quarantined:,} + duplicates collapsed {self.duplicates_collapsed:,}")
        if self.rows_after_as_of:
            text += f" + after --as-of {self.rows_after_as_of:,}"
        return text

    def as_dict(self) -> dict:
        return {"source": self.source, "rows_in": self.rows_in, "rows_used": self.rows_used,
                "rows_quarantined": self.rows_quarantined,
                "duplicates_collapsed": self.duplicates_collapsed,
                "rows_after_as_of": self.rows_after_as_of,
                "by_reason": dict(self.by_reason), "patients": self.patients,
                "balanced": self.balanced}


@dataclass
class IngestResult:
    """The clean telemetry, its series index, the quarantine and the row accounting."""

    clean: pl.DataFrame
    quarantine: pl.DataFrame
    report: Reconciliation
    index: SeriesIndex = None

    def __post_init__(self):
        if self.index is None:
            self.index = SeriesIndex.of(self.clean)


def ingest(source, *, tz: str | None = None, now: dt.datetime | None = None,
           name: str | None = None, columns: dict[str, str] | None = None,
           metric: str | None = None, unit: str | None = None,
           patients: pl.DataFrame | None = None,
           earliest: dt.datetime = EARLIEST) -> IngestResult:
    """Read and check telemetry; return clean rows, quarantined rows and the row accounting.

    Parameters
    ----------
    source : path, ``file.duckdb:table``, polars/pyarrow/pandas frame
        Long-format telemetry (README, "Input: the telemetry contract").
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
    patients : pl.DataFrame, optional
        A checked patients table (:func:`engine.patients.check_patients`): rows of a patient it
        does not list are quarantined (``unknown_patient``).
    earliest : datetime
        Readings before it are quarantined (``timestamp_too_early``); default :data:`EARLIEST`.

    Examples
    --------
    >>> import polars as pl
    >>> raw = pl.DataFrame({"patient_id": ["P1", "P1"], "ts": ["2026-01-05T08:00Z"] * 2,
    ...                     "metric": ["weight", "8867-4"], "value": ["81.5", "72"]})
    >>> ingest(raw).report.summary()
    'rows in 2 = used 2 + quarantined 0 + duplicates collapsed 0'
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else "<frame>")
    table, rejects = read_table_rows(source)
    raw = adapt_columns(table, label, columns=columns, metric=metric, unit=unit)
    result = ingest_frame(raw, tz=tz, now=now, name=label, patients=patients, earliest=earliest)
    return with_rejects(result, rejects) if len(rejects) else result


def with_rejects(result: IngestResult, rejects: Rejects) -> IngestResult:
    """``result`` with the lines the reader set apart (:class:`engine.sources.Rejects`)
    quarantined as ``malformed_row`` — their row numbers and why, never their content — and
    the quarantine's other rows numbered as in the file."""
    q = result.quarantine
    if rejects.kept is not None and q.height:
        q = q.with_columns(row=pl.Series(rejects.kept[q["row"].to_numpy() - 1],
                                         dtype=pl.Int64))
    bad = pl.DataFrame({"row": rejects.rows, "source": [result.report.source] * len(rejects),
                        "reason": ["malformed_row"] * len(rejects), "detail": rejects.details},
                       schema={"row": pl.Int64, "source": pl.String, "reason": pl.String,
                               "detail": pl.String})
    q = pl.concat([q, bad], how="diagonal").select(list(QUARANTINE_SCHEMA)) \
        .cast(QUARANTINE_SCHEMA).sort("row")
    rep = result.report
    by_reason = dict(rep.by_reason)
    by_reason["malformed_row"] = by_reason.get("malformed_row", 0) + len(rejects)
    report = Reconciliation(**{**rep.__dict__, "rows_in": rep.rows_in + len(rejects),
                               "rows_quarantined": rep.rows_quarantined + len(rejects),
                               "by_reason": dict(sorted(by_reason.items()))}).check()
    return IngestResult(clean=result.clean, quarantine=q, report=report, index=result.index)


def adapt_columns(raw: pl.DataFrame, name: str, *, columns: dict[str, str] | None = None,
                  metric: str | None = None, unit: str | None = None) -> pl.DataFrame:
    """Rename columns and add constant ``metric`` / ``unit`` columns to an export."""
    if columns:
        unknown = [c for c in columns if c not in raw.columns]
        if unknown:
            raise InputError(f"cannot rename column(s) {', '.join(unknown)}: the file has "
                             f"{', '.join(raw.columns)}.", path=name, column=unknown[0])
        targets = list(columns.values())
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            raise InputError(f"--columns renames several columns to '{twice[0]}'; each contract "
                             "column can come from one column only.", path=name, column=twice[0])
        kept = [c for c in raw.columns if c not in columns]
        clash = [t for t in targets if t in kept]
        if clash:
            raise InputError(f"--columns renames a column to '{clash[0]}', but the file already "
                             f"has a '{clash[0]}' column. Rename that one too (e.g. "
                             f"'{clash[0]}={clash[0]}_orig'), or leave it out of --columns.",
                             path=name, column=clash[0])
        raw = raw.rename(columns)
    for col, value in (("metric", metric), ("unit", unit)):
        if value is None:
            continue
        if col in raw.columns:
            raise InputError(f"the file already has a '{col}' column; drop --{col} or rename "
                             "the column.", path=name, column=col)
        raw = raw.with_columns(pl.lit(value, dtype=pl.String).alias(col))
    return raw


# --------------------------------------------------------------------------------------------
# file-level checks


def _check_columns(raw: pl.DataFrame, name: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        found = ", ".join(raw.columns) or "none"
        raise InputError(
            f"telemetry is missing the required column(s) {', '.join(missing)}. Telemetry is long "
            f"format with columns {', '.join(REQUIRED_COLUMNS)} (and optionally "
            f"{', '.join(OPTIONAL_COLUMNS)}); found: {found}. If the export names them "
            "otherwise, map them with --columns (e.g. --columns 'id=patient_id,time=ts'), and "
            "give --metric/--unit for a single-metric export.", path=name, column=missing[0])
    allowed = {
        "patient_id": lambda t: t == pl.String or t.is_integer() or t == pl.Categorical,
        "ts": lambda t: t == pl.String or isinstance(t, pl.Datetime) or t == pl.Date,
        "metric": lambda t: t == pl.String or t == pl.Categorical or t.is_integer()
        or isinstance(t, pl.Enum),
        "value": lambda t: t == pl.String or t.is_numeric() or t == pl.Null,
        "unit": lambda t: t == pl.String or t == pl.Null or t == pl.Categorical
        or isinstance(t, pl.Enum),
        "source": lambda t: t == pl.String or t == pl.Null or t == pl.Categorical
        or isinstance(t, pl.Enum) or t.is_integer(),
    }
    expected = {
        "patient_id": "text (a pseudonymous id) or an integer",
        "ts": "a timestamp or ISO-8601 text (epoch numbers are ambiguous and refused)",
        "metric": "text (a canonical metric name or a LOINC code)",
        "value": "a number (or text holding a number)",
        "unit": "text (UCUM unit)",
        "source": "text (device or questionnaire id)",
    }
    for col, ok in allowed.items():
        if col in raw.columns and raw[col].dtype != pl.Null and not ok(raw[col].dtype):
            raise InputError(f"has type {raw[col].dtype}; expected {expected[col]}.", path=name,
                             column=col)


def check_zone(tz: str) -> None:
    """Raise InputError unless ``tz`` is an IANA time zone name."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone {tz!r}; give an IANA name such as 'Europe/Paris' "
                         "or 'UTC'.") from None


# --------------------------------------------------------------------------------------------
# codes of each distinct value


def _text(col: pl.Series) -> pl.Series:
    return col.cast(pl.String)


def _patient_table(enc: Encoded) -> tuple[np.ndarray, pl.Series, bool]:
    """(code per encoded value, the sorted distinct ids, whether every id was clean as given).

    Ids are compared stripped of surrounding spaces (an id typed with a trailing space in one
    file and without it in the other is the same patient); an empty id is code -1.
    """
    norm = _text(enc.values).str.strip_chars()
    ids = sorted(set(norm.drop_nulls().to_list()) - {""})
    rank = {v: i for i, v in enumerate(ids)}
    table = lookup(norm, lambda v: rank.get(v, -1) if v is not None else -1)
    clean = (enc.values.dtype == pl.String and not (table < 0).any()
             and bool(norm.equals(enc.values)))
    return table, pl.Series("patient_id", ids, dtype=pl.String), clean


_METRIC_LOOKUP = {**{m: m for m in METRICS}, **{c: m.name for m in METRICS.values()
                                                  for c in m.loinc}}
_METRIC_CODE = {m: i for i, m in enumerate(METRIC_NAMES)}


def _metric_table(enc: Encoded) -> tuple[np.ndarray, bool]:
    """(metric code per encoded value, whether every value is a canonical name as written)."""
    names = (_text(enc.values).str.strip_chars()
             .str.replace(r"^(?i:loinc:|http://loinc\.org\|)", ""))
    table = lookup(names, lambda v: _METRIC_CODE.get(_METRIC_LOOKUP.get(v), -1)
                   if v is not None else -1)
    canonical = enc.values.dtype == pl.String and all(
        v in _METRIC_CODE for v in enc.values.unique().to_list())
    return table, canonical


def _unit_tables():
    """Spellings and (scale, offset) per (metric code, spelling code); NaN: not convertible."""
    spellings = sorted({u for m in METRICS.values() for u in m.units})
    code = {u: i for i, u in enumerate(spellings)}
    scale = np.full((len(METRIC_NAMES), len(spellings) + 1), np.nan)
    offset = np.zeros_like(scale)
    for mi, name in enumerate(METRIC_NAMES):
        for u, (a, b) in METRICS[name].units.items():
            scale[mi, code[u]] = a
            offset[mi, code[u]] = b
    canon = np.array([code[METRICS[m].unit] for m in METRIC_NAMES], np.int32)
    return code, scale, offset, canon          # the last column: a spelling no metric knows


_UNIT_CODE, _SCALE, _OFFSET, _UNIT_CANON = _unit_tables()
_UNKNOWN_UNIT = _SCALE.shape[1] - 1
_LOW = np.array([float(METRICS[m].low) for m in METRIC_NAMES])
_HIGH = np.array([float(METRICS[m].high) for m in METRIC_NAMES])
_INTEGER = np.array([METRICS[m].integer for m in METRIC_NAMES], dtype=np.bool_)


def _unit_table(enc: Encoded) -> tuple[np.ndarray, bool]:
    """(spelling code per encoded value, -1 for none given; whether every value is written
    exactly as its spelling)."""
    texts = _text(enc.values)
    table = lookup(texts, lambda v: -1 if v is None or not v.strip()
                   else _UNIT_CODE.get(v.strip(), _UNKNOWN_UNIT))
    exact = enc.values.dtype == pl.String and all(
        v in _UNIT_CODE for v in texts.unique().to_list())
    return table, exact


def _values(col: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(flag, value): flag V_MISSING (null or a null text), V_UNPARSEABLE, else V_OK."""
    n = col.len()
    if col.dtype == pl.Null:
        return np.full(n, K.V_MISSING, np.uint8), np.full(n, np.nan)
    if col.dtype.is_numeric():
        v = col.cast(pl.Float64)
        if v.null_count() == 0:
            return np.zeros(n, np.uint8), v.rechunk().to_numpy()
        flag = np.where(v.is_null().to_numpy(), K.V_MISSING, K.V_OK).astype(np.uint8)
        return flag, v.fill_null(np.nan).to_numpy().astype(np.float64, copy=False)
    txt = pl.col("v").str.strip_chars()
    # a lone decimal comma is common in French device exports: "36,8"
    parsed = txt.str.replace(r"^([+-]?\d+),(\d+)$", "${1}.${2}").cast(pl.Float64, strict=False)
    df = pl.DataFrame({"v": col}).select(
        flag=pl.when(txt.is_null() | txt.is_in(times.NULL_TEXT)).then(pl.lit(K.V_MISSING,
                                                                             pl.UInt8))
        .when(parsed.is_null()).then(pl.lit(K.V_UNPARSEABLE, pl.UInt8))
        .otherwise(pl.lit(K.V_OK, pl.UInt8)),
        value=parsed.fill_null(np.nan))
    return df["flag"].to_numpy(), df["value"].to_numpy()


def _us(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


# --------------------------------------------------------------------------------------------
# the stage


def ingest_frame(raw: pl.DataFrame, *, tz: str | None = None, now: dt.datetime | None = None,
                 name: str = "<frame>", patients: pl.DataFrame | None = None,
                 earliest: dt.datetime = EARLIEST) -> IngestResult:
    """:func:`ingest` on a frame already in memory."""
    _check_columns(raw, name)
    if raw.height == 0:
        raise InputError("has the telemetry columns but no rows: nothing to score. An empty "
                         "export usually means the upstream extraction failed.", path=name)
    if tz is not None:
        check_zone(tz)
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        raise InputError("the reference time 'now' must carry a time zone", path=name)
    n = raw.height

    enc = encode_columns(raw, ("patient_id", "metric", "unit"))
    ptab, ids, ids_clean = _patient_table(enc["patient_id"])
    known = np.ones(max(ids.len(), 1), np.bool_)
    if patients is not None:
        known[:ids.len()] = ids.is_in(patients["patient_id"].implode()).to_numpy()
    mtab, metrics_clean = _metric_table(enc["metric"])
    has_unit = "unit" in enc
    utab, units_exact = (_unit_table(enc["unit"]) if has_unit
                         else (np.full(1, -1, np.int32), False))
    ukey = enc["unit"].key if has_unit else np.zeros(1, np.uint32)
    ts, tflag = times.to_utc_us(raw["ts"], tz)
    vflag, v = _values(raw["value"])
    # in Arrow memory, which is kept and reused from one run to the next (and which a polars
    # column may hold: the converted values become the clean column)
    reason, value = empty(n, np.uint8), empty(n, np.float64)
    pcode, mcode = empty(n, np.int32), empty(n, np.int16)
    changed, other_unit = K.row_reasons(
        enc["patient_id"].key, ptab, known, ts, tflag, enc["metric"].key, mtab, vflag, v, ukey,
        utab, has_unit, _SCALE, _OFFSET, _LOW, _HIGH, _INTEGER, _UNIT_CANON, _us(earliest),
        _us(now + FUTURE_TOLERANCE), reason, value, pcode, mcode)

    if K.all_used_and_strictly_ordered(reason, pcode, mcode, ts):
        # the common case of a clean, sorted export: no row moves, none is dropped
        keep, conflict, collapsed, identity = None, np.zeros(0, np.int64), 0, True
    else:
        ok = np.flatnonzero(reason == K.R_OK)
        rows = K.order(ok, pcode, mcode, ts, max(ids.len(), 1), len(METRIC_NAMES))
        same = K.same_as_previous(rows, pcode, mcode, ts)
        keep, conflict, collapsed = _duplicates(rows, same, value)
        if conflict.size:
            reason[conflict] = K.R_CONFLICT
        identity = keep.size == n and K.is_identity(keep)
        if identity:
            keep = None
    reuse = set()
    if identity:
        reuse = {c for c, ok in (("patient_id", ids_clean), ("metric", metrics_clean),
                                 ("value", changed == 0 and raw["value"].dtype == pl.Float64),
                                 ("unit", has_unit and units_exact and other_unit == 0),
                                 ("ts", raw["ts"].dtype == TS_DTYPE)) if ok}
    clean = _clean_frame(raw, keep, pcode, ids, ts, mcode, value, identity, reuse)
    quarantine = _quarantine(raw, reason, value, pcode, mcode, ts, now, earliest, conflict)
    by_reason = dict(quarantine.group_by("reason").len().sort("reason").iter_rows())
    index = (SeriesIndex.from_codes(pcode, mcode, ids) if keep is None
             else SeriesIndex.from_codes(pcode[keep], mcode[keep], ids))
    report = Reconciliation(source=name, rows_in=n, rows_used=clean.height,
                            rows_quarantined=quarantine.height, duplicates_collapsed=collapsed,
                            by_reason=by_reason, patients=index.patient_ids.len())
    return IngestResult(clean=clean, quarantine=quarantine, report=report.check(), index=index)


def _duplicates(rows: np.ndarray, same: np.ndarray, value: np.ndarray):
    """Rows kept, rows of conflicting duplicates, and the count of exact duplicates collapsed.

    Duplicates (same patient, metric and time) are judged on the converted value to 0.01 of the
    canonical unit (finer than any device reports): 81.2 kg and 179.015 lb are the same reading;
    two different values make every row of the group a conflict (veille cannot know which).
    """
    if not same.any():
        return rows, np.zeros(0, np.int64), 0
    group = np.cumsum(~same) - 1
    dup_groups = np.unique(group[same])
    in_dup = np.isin(group, dup_groups)
    d = pl.DataFrame({"g": group[in_dup], "v": value[rows[in_dup]]})
    distinct = d.group_by("g").agg(pl.col("v").round(2).n_unique().alias("k"))
    bad_groups = distinct.filter(pl.col("k") > 1)["g"].to_numpy()
    bad = np.isin(group, bad_groups)
    conflict = np.sort(rows[bad])
    first = ~same & ~bad
    keep = rows[first]
    collapsed = int(rows.size - bad.sum() - first.sum())
    return keep, conflict, collapsed


def _clean_frame(raw: pl.DataFrame, keep: np.ndarray, pcode, ids: pl.Series, ts, mcode,
                 value, identity: bool, reuse: set[str]) -> pl.DataFrame:
    """The clean columns: the input's own where it was clean and in order (``reuse``), else
    gathered from the codes and converted values of the rows kept (``keep`` None: every row,
    in input order)."""
    if keep is None:
        keep = slice(None)
    m = mcode[keep]
    names = pl.Series(METRIC_NAMES, dtype=pl.String)
    units = pl.Series([METRICS[x].unit for x in METRIC_NAMES], dtype=pl.String)
    if "source" in raw.columns:
        src = raw["source"].cast(pl.String)
        source = src if identity else src.gather(keep)
    else:
        source = pl.Series([None] * len(m), dtype=pl.String)
    out = {
        "patient_id": raw["patient_id"] if "patient_id" in reuse else ids.gather(pcode[keep]),
        "ts": raw["ts"] if "ts" in reuse else
        pl.Series(ts[keep]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "metric": raw["metric"] if "metric" in reuse else names.gather(m),
        "value": raw["value"] if "value" in reuse else pl.Series(value[keep]),
        "unit": raw["unit"] if "unit" in reuse else units.gather(m),
        "source": source,
    }
    return pl.DataFrame(out).cast(TELEMETRY_SCHEMA)


_TEXT_COLS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)


def _as_text(col: str, raw: pl.DataFrame) -> pl.Expr:
    if col not in raw.columns:
        return pl.lit(None, dtype=pl.String).alias(col)
    e = pl.col(col)
    if isinstance(raw[col].dtype, pl.Datetime):
        return e.dt.to_string("iso").alias(col)
    return e.cast(pl.String).alias(col)


def _quarantine(raw: pl.DataFrame, reason, value, pcode, mcode, ts, now: dt.datetime,
                earliest: dt.datetime, conflict: np.ndarray) -> pl.DataFrame:
    bad = np.flatnonzero(reason != K.R_OK)
    if bad.size == 0:
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    sub = raw[bad]
    names = pl.Series(_REASON_NAMES, dtype=pl.String)
    metric_names = pl.Series([*METRIC_NAMES, None], dtype=pl.String)
    m = np.where(mcode[bad] < 0, len(METRIC_NAMES), mcode[bad])
    df = sub.select(*[_as_text(c, raw) for c in _TEXT_COLS]).with_columns(
        row=pl.Series(bad + 1, dtype=pl.Int64),
        reason=names.gather(reason[bad]),
        _metric=metric_names.gather(m),
        _value=pl.Series(value[bad]),
        _ts=pl.Series(ts[bad]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
    )
    if conflict.size:
        df = df.join(_conflict_groups(conflict, value, pcode, mcode, ts), on="row", how="left")
    else:
        df = df.with_columns(_n=pl.lit(None, pl.UInt32), _nvals=pl.lit(None, pl.UInt32))
    return df.select("row", *_TEXT_COLS, "reason", detail=_detail(now, earliest)) \
        .cast(QUARANTINE_SCHEMA)


def _conflict_groups(conflict, value, pcode, mcode, ts) -> pl.DataFrame:
    """Per conflicting row: how many rows share its key, and with how many distinct values."""
    g = pl.DataFrame({"row": conflict + 1, "p": pcode[conflict], "m": mcode[conflict],
                      "t": ts[conflict],
                      "v": value[conflict]})
    return g.with_columns(
        _n=pl.len().over("p", "m", "t").cast(pl.UInt32),
        _nvals=pl.col("v").round(2).n_unique().over("p", "m", "t").cast(pl.UInt32),
    ).select(pl.col("row").cast(pl.Int64), "_n", "_nvals")


def _detail(now: dt.datetime, earliest: dt.datetime) -> pl.Expr:
    r, m, v = pl.col("reason"), pl.col("_metric"), pl.col("_value")
    unit_txt = pl.col("unit").str.strip_chars()
    canon = m.replace_strict({k: x.unit for k, x in METRICS.items()}, default=None,
                             return_dtype=pl.String)
    low = m.replace_strict({k: float(x.low) for k, x in METRICS.items()}, default=None,
                           return_dtype=pl.Float64)
    high = m.replace_strict({k: float(x.high) for k, x in METRICS.items()}, default=None,
                            return_dtype=pl.Float64)
    integer = m.replace_strict({k: x.integer for k, x in METRICS.items()}, default=False,
                               return_dtype=pl.Boolean)
    return (
        pl.when(r == "unknown_metric").then(
            pl.format("'{}' is not a canonical metric or known LOINC code", pl.col("metric")))
        .when(r == "unknown_patient").then(
            pl.format("patient '{}' has no row in the patients table",
                      pl.col("patient_id").str.strip_chars()))
        .when(r == "unconvertible_unit").then(
            pl.format("'{}' cannot be converted to {} for {}", unit_txt, canon, m))
        .when(r == "implausible_value").then(
            pl.format("{} {} is outside {}..{}{}", v.round(4), canon, low, high,
                      pl.when(integer).then(pl.lit(" (whole numbers only)")).otherwise(
                          pl.lit(""))))
        .when(r == "timestamp_too_early").then(
            pl.format("{} is before the earliest plausible date {} (a device clock reset?)",
                      pl.col("_ts"), pl.lit(earliest.isoformat())))
        .when(r == "future_timestamp").then(
            pl.format("{} is after the run time {}", pl.col("_ts"), pl.lit(now.isoformat())))
        .when(r == "conflicting_duplicate").then(
            pl.format("{} rows share this patient, metric and time with {} different values",
                      pl.col("_n"), pl.col("_nvals")))
        .otherwise(r.replace_strict(REASONS, default=None, return_dtype=pl.String))
    )
