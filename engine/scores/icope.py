"""WHO ICOPE step 1: the six intrinsic-capacity screens, their decline flags and the change since
the previous screening (WHO, Integrated Care for Older People handbook, 2019; Toulouse ICOPE
MONITOR repeats step 1 every 4 months and alerts on a new positive domain or a worsening).

Screening answers arrive as telemetry metrics: ``icope_cognition``, ``icope_vitality``,
``icope_vision``, ``icope_hearing``, ``icope_psychological`` (0/1 flags, 1 = positive screen:
3-word recall or orientation failed; weight loss or appetite loss; vision problem; whisper test
failed; low mood or loss of interest in the last 2 weeks) and ``icope_locomotion`` (seconds for
5 chair rises without using the arms; more than 14 s is a decline).

The vitality flag is taken as answered: the questionnaire decides it (weight loss > 3 kg in the
last 3 months [to confirm] or loss of appetite), so that figure is not encoded here.
"""
from __future__ import annotations

import polars as pl

from ..durations import parse_duration
from ..errors import InputError
from ._chart import check_number

REFERENCE = ("World Health Organization. Integrated care for older people (ICOPE): guidance for "
             "person-centred assessment and pathways in primary care. Geneva: WHO, 2019 "
             "(WHO/FWC/ALC/19.1).")

DOMAINS = ("cognition", "locomotion", "vitality", "vision", "hearing", "psychological")
#: telemetry metric of each domain
METRICS = tuple(f"icope_{d}" for d in DOMAINS)
_FLAG_METRICS = tuple(m for m in METRICS if m != "icope_locomotion")


def _long(screenings: object) -> pl.DataFrame:
    """Long (patient_id, ts, metric, value) rows of ICOPE answers, from long or wide input."""
    if not isinstance(screenings, pl.DataFrame):
        raise InputError(f"icope_step1 takes a polars DataFrame. Got "
                         f"{type(screenings).__name__} instead.")
    for column in ("patient_id", "ts"):
        if column not in screenings.columns:
            raise InputError("icope_step1 needs the columns patient_id and ts.", column=column)
    if not isinstance(screenings.schema["ts"], (pl.Datetime, pl.Date)):
        raise InputError(f"icope_step1 needs a date or datetime; found {screenings.schema['ts']}.",
                         column="ts")
    if "metric" in screenings.columns:
        if "value" not in screenings.columns:
            raise InputError("icope_step1 reads long input as metric and value columns.",
                             column="value")
        long = screenings.filter(pl.col("metric").is_in(METRICS)).select(
            "patient_id", "ts", "metric", "value")
    else:
        present = [m for m in METRICS if m in screenings.columns]
        if not present:
            raise InputError(f"icope_step1 needs long input (metric, value) or wide input with "
                             f"at least one of the columns {', '.join(METRICS)}.")
        for m in present:
            if not (screenings.schema[m].is_numeric() or screenings.schema[m] == pl.Null):
                raise InputError(f"icope_step1 needs numeric answers; found "
                                 f"{screenings.schema[m]}.", column=m)
        long = screenings.select("patient_id", "ts", *[pl.col(m).cast(pl.Float64)
                                                       for m in present]).unpivot(
            present, index=["patient_id", "ts"], variable_name="metric", value_name="value")
    if not (long.schema["value"].is_numeric() or long.schema["value"] == pl.Null):
        raise InputError(f"icope_step1 needs numeric answers; found {long.schema['value']}.",
                         column="value")
    ts_type = screenings.schema["ts"]
    zone = ts_type.time_zone if isinstance(ts_type, pl.Datetime) else None
    long = long.with_columns(pl.col("patient_id").cast(pl.String),
                             pl.col("value").cast(pl.Float64).fill_nan(None),
                             pl.col("ts").cast(pl.Datetime("us", zone)))
    long = long.filter(pl.col("value").is_not_null() & pl.col("ts").is_not_null())
    bad_flag = long.filter(pl.col("metric").is_in(_FLAG_METRICS)
                           & ~pl.col("value").is_in([0.0, 1.0]))
    if bad_flag.height:
        row = bad_flag.row(0, named=True)
        raise InputError(f"ICOPE screening flags are 0 (negative) or 1 (positive); found "
                         f"{row['value']:g} for patient {row['patient_id']}.",
                         column=row["metric"])
    bad_time = long.filter((pl.col("metric") == "icope_locomotion") & (pl.col("value") < 0))
    if bad_time.height:
        raise InputError(f"chair-rise time must be seconds >= 0; found "
                         f"{bad_time['value'][0]:g}.", column="icope_locomotion")
    return long


def icope_step1(screenings: pl.DataFrame, *, locomotion_threshold: float = 14.0,
                locomotion_worsening: float = 2.0, group_window: str = "1d") -> pl.DataFrame:
    """One row per patient per ICOPE step-1 screening, with decline flags and changes.

    Parameters
    ----------
    screenings : pl.DataFrame
        Either long telemetry (``patient_id``, ``ts``, ``metric``, ``value``; rows of other
        metrics are ignored) or wide (``patient_id``, ``ts`` and any of the ``icope_*`` columns).
        Nulls are unanswered items.
    locomotion_threshold : float
        Chair-rise seconds for 5 rises strictly above which locomotion is a decline (14 s, WHO
        ICOPE 2019).
    locomotion_worsening : float
        Increase in chair-rise seconds since the previous screening counted as a worsening
        (≥ 2 s) [to confirm: no published delta; Toulouse ICOPE MONITOR leaves it to the team].
    group_window : str
        How answers are grouped into one screening: answers of the same patient belong to the
        same screening while each follows the previous one by at most this duration (1 day).
        Within a screening, the latest answer to an item wins.

    Returns
    -------
    pl.DataFrame
        Sorted by patient and time: ``patient_id``, ``screened_at`` (first answer),
        ``n_answers``, the six ``icope_*`` answers (Float64, null = not screened), for each
        domain ``<domain>_decline`` (Boolean; null when not screened) and ``<domain>_new``
        (positive now and not positive at the last previous screening that assessed it, or no
        such screening: on the first screening every positive domain is new; null when not
        screened), ``locomotion_change_s`` (seconds since the last previous chair-rise time),
        ``locomotion_worsened`` (change ≥ ``locomotion_worsening``), ``n_declines`` (positive
        domains), ``complete`` (all six screened) and ``worsened`` (any new positive domain or
        locomotion worsened — what alerts the team; an unscreened domain is not a change).

    Examples
    --------
    >>> import polars as pl
    >>> from datetime import datetime
    >>> s = pl.DataFrame({"patient_id": ["p1", "p1"],
    ...                   "ts": [datetime(2024, 1, 10), datetime(2024, 5, 10)],
    ...                   "icope_locomotion": [12.0, 15.5], "icope_hearing": [1, 1]})
    >>> icope_step1(s).select("locomotion_decline", "locomotion_new", "hearing_new",
    ...                       "worsened").rows()
    [(False, False, True, True), (True, True, False, True)]
    """
    fn = "icope_step1"
    threshold = check_number(locomotion_threshold, "locomotion_threshold", fn)
    delta = check_number(locomotion_worsening, "locomotion_worsening", fn, positive=True)
    window = parse_duration(group_window, what="'group_window' parameter of icope_step1")
    long = _long(screenings).sort("patient_id", "ts")

    gap = (pl.col("ts") - pl.col("ts").shift(1).over("patient_id")).dt.total_microseconds()
    long = long.with_columns(screening=(gap.is_null() | (gap > window)).cum_sum())
    # group_by keeps the rows' order inside each group, so .last() is the latest answer
    wide = long.group_by("patient_id", "screening").agg(
        pl.col("ts").min().alias("screened_at"), pl.len().cast(pl.UInt32).alias("n_answers"),
        *[pl.col("value").filter(pl.col("metric") == m).last().alias(m) for m in METRICS],
    ).sort("patient_id", "screened_at").drop("screening")

    decline = {f"{d}_decline": pl.col(f"icope_{d}") > (threshold if d == "locomotion" else 0)
               for d in DOMAINS}
    wide = wide.with_columns(**decline)

    def before(column: str) -> pl.Expr:
        # the last answer before this screening (screenings that skipped the item are passed)
        return pl.col(column).shift(1).forward_fill().over("patient_id")

    new = {f"{d}_new": pl.when(pl.col(f"{d}_decline").is_not_null()).then(
        pl.col(f"{d}_decline") & ~before(f"{d}_decline").fill_null(False)) for d in DOMAINS}
    change = pl.col("icope_locomotion") - before("icope_locomotion")
    wide = wide.with_columns(**new, locomotion_change_s=change,
                             locomotion_worsened=change >= delta)
    return wide.with_columns(
        n_declines=pl.sum_horizontal(list(decline)).cast(pl.UInt32),
        complete=pl.all_horizontal([pl.col(m).is_not_null() for m in METRICS]),
        worsened=pl.any_horizontal([pl.col(c).fill_null(False)
                                    for c in [*new, "locomotion_worsened"]]),
    )
