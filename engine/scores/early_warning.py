"""qSOFA, MEWS and the vital-sign part of SIRS: the other bedside early-warning scores.

All three follow the NEWS2 null rule (:mod:`engine.scores._chart`): a missing reading gives a null
criterion, a total only when complete, a ``<score>_partial`` sum of the known criteria, and a
positive/high flag that is true as soon as the known criteria reach the threshold, false only
when complete and below it.
"""
from __future__ import annotations

import polars as pl

from ._chart import (ROUNDING, at_least, banded, check_choice, check_cuts, check_number,
                     consciousness_code, numeric, require_columns, round_to, totals)

QSOFA_REFERENCE = ("Singer M et al. The Third International Consensus Definitions for Sepsis and "
                   "Septic Shock (Sepsis-3). JAMA 2016;315:801-10; Seymour CW et al. JAMA "
                   "2016;315:762-74.")
MEWS_REFERENCE = ("Subbe CP, Kruger M, Rutherford P, Gemmel L. Validation of a modified Early "
                  "Warning Score in medical admissions. QJM 2001;94:521-6.")
SIRS_REFERENCE = ("Bone RC et al. (ACCP/SCCM Consensus Conference). Definitions for sepsis and "
                  "organ failure. Chest 1992;101:1644-55.")

QSOFA_INPUTS = ("resp_rate", "sbp", "consciousness")
QSOFA_SUBSCORES = ("qsofa_resp_rate", "qsofa_sbp", "qsofa_mentation")
QSOFA_OUTPUTS = QSOFA_SUBSCORES + ("qsofa_partial", "qsofa_complete", "qsofa", "qsofa_positive")

MEWS_INPUTS = ("sbp", "heart_rate", "resp_rate", "temp", "consciousness")
MEWS_SUBSCORES = ("mews_sbp", "mews_heart_rate", "mews_resp_rate", "mews_temp",
                  "mews_consciousness")
MEWS_OUTPUTS = MEWS_SUBSCORES + ("mews_partial", "mews_complete", "mews", "mews_high")

SIRS_INPUTS = ("temp", "heart_rate", "resp_rate")
SIRS_SUBSCORES = ("sirs_temp", "sirs_heart_rate", "sirs_resp_rate")
SIRS_OUTPUTS = SIRS_SUBSCORES + ("sirs_partial", "sirs_complete", "sirs", "sirs_positive")


def qsofa(frame: pl.DataFrame, *, rr_high: float = 22, sbp_low: float = 100,
          altered_from: int = 1, positive_at: int = 2, rounding: str = "half_up") -> pl.DataFrame:
    """Add qSOFA (Sepsis-3, 2016): one point each for RR ≥ 22 /min, SBP ≤ 100 mmHg and altered
    mentation; positive at ≥ 2.

    Altered mentation is defined on the Glasgow Coma Scale (GCS < 15 in current use; the
    derivation cohort used ≤ 13). Telemetry carries ACVPU, not GCS, so the proxy chosen here is
    "consciousness not alert": ACVPU code ≥ ``altered_from`` (1 = new confusion, so C, V, P and
    U all count). Any of C/V/P/U implies GCS < 15; the converse does not hold exactly.

    Parameters
    ----------
    frame : pl.DataFrame
        Columns ``resp_rate`` (/min), ``sbp`` (mmHg), ``consciousness`` (ACVPU letters or codes
        0..4); nulls are missing readings.
    rr_high, sbp_low : float
        RR at or above ``rr_high`` and SBP at or below ``sbp_low`` score 1 (22, 100).
    altered_from : int
        Lowest ACVPU code counted as altered mentation (1, new confusion).
    positive_at : int
        Total from which qSOFA is positive (2).
    rounding : {"half_up", "half_even", "none"}
        Readings rounded to integers first, as for NEWS2 (SBP 100.4 → 100 scores).

    Returns
    -------
    pl.DataFrame
        The input with ``qsofa_resp_rate``, ``qsofa_sbp``, ``qsofa_mentation`` (Int32 0/1, null
        when missing), ``qsofa_partial``, ``qsofa_complete``, ``qsofa`` (null unless complete)
        and ``qsofa_positive`` (Boolean, three-valued).

    Examples
    --------
    >>> import polars as pl
    >>> obs = pl.DataFrame({"resp_rate": [24, 18], "sbp": [95, 130], "consciousness": [None, 0]})
    >>> qsofa(obs).select("qsofa", "qsofa_partial", "qsofa_positive").rows()
    [(None, 2, True), (0, 0, False)]
    """
    fn = "qsofa"
    check_choice(rounding, ROUNDING, "rounding", fn)
    rr_high, sbp_low = check_number(rr_high, "rr_high", fn), check_number(sbp_low, "sbp_low", fn)
    altered_from = check_number(altered_from, "altered_from", fn)
    positive_at = check_number(positive_at, "positive_at", fn)
    frame = require_columns(frame, QSOFA_INPUTS, fn)
    rr = round_to(numeric(frame, "resp_rate", fn), 0, rounding)
    sbp = round_to(numeric(frame, "sbp", fn), 0, rounding)
    mind = consciousness_code(frame, "consciousness", fn)
    out = frame.with_columns(
        qsofa_resp_rate=banded(rr, (rr_high,), (0, 1), closed="left"),
        qsofa_sbp=banded(sbp, (sbp_low,), (1, 0)),
        qsofa_mentation=banded(mind, (altered_from,), (0, 1), closed="left"),
    ).with_columns(totals("qsofa", QSOFA_SUBSCORES))
    return out.with_columns(at_least("qsofa", positive_at).alias("qsofa_positive"))


def mews(frame: pl.DataFrame, *, sbp_cuts=(70, 80, 100, 199),
         heart_rate_cuts=(40, 50, 100, 110, 129), resp_rate_cuts=(8, 14, 20, 29), temp_low: float = 35.0, temp_high: float = 38.5,
         confusion_points: int = 1, high_at: int = 5, rounding: str = "half_up") -> pl.DataFrame:
    """Add MEWS, the Modified Early Warning Score of Subbe et al. (QJM 2001).

    ==================  =====  =====  ======  ========  =======  =======  =====
    parameter           3      2      1       0         1        2        3
    ==================  =====  =====  ======  ========  =======  =======  =====
    systolic BP mmHg    ≤70    71–80  81–100  101–199            ≥200
    heart rate /min            ≤40    41–50   51–100    101–110  111–129  ≥130
    respiration /min           ≤8             9–14      15–20    21–29    ≥30
    temperature °C             <35            35–38.4            ≥38.5
    AVPU                                      alert     voice    pain     unresp.
    ==================  =====  =====  ======  ========  =======  =======  =====

    A total ≥ 5 flags a patient at risk (``mews_high``).

    Subbe's AVPU has no "new confusion"; telemetry's ACVPU code 1 (C) scores
    ``confusion_points``, 1 by default like "voice" in several adapted MEWS charts
    [to confirm: not in Subbe 2001; a local choice].

    Parameters
    ----------
    frame : pl.DataFrame
        Columns ``sbp`` (mmHg), ``heart_rate`` (/min), ``resp_rate`` (/min), ``temp`` (°C),
        ``consciousness`` (ACVPU letters or codes 0..4); nulls are missing readings.
    sbp_cuts, heart_rate_cuts, resp_rate_cuts : tuple
        Upper edges (inclusive) of the bands in the table above, published values by default.
    temp_low, temp_high : float
        Temperatures below ``temp_low`` (35.0) or at or above ``temp_high`` (38.5) score 2.
    confusion_points : int
        Points for new confusion (ACVPU "C"); see above.
    high_at : int
        Total from which ``mews_high`` is true (5).
    rounding : {"half_up", "half_even", "none"}
        Readings rounded to the chart's resolution first (integers; temperature 0.1 °C).

    Returns
    -------
    pl.DataFrame
        The input with ``mews_<parameter>`` sub-scores (Int32), ``mews_partial``,
        ``mews_complete``, ``mews`` (null unless complete) and ``mews_high`` (three-valued).

    Examples
    --------
    >>> import polars as pl
    >>> obs = pl.DataFrame({"sbp": [120, 78], "heart_rate": [80, 115], "resp_rate": [12, 24],
    ...                     "temp": [37.0, 38.6], "consciousness": ["A", "V"]})
    >>> mews(obs).select("mews", "mews_high").rows()
    [(0, False), (9, True)]
    """
    fn = "mews"
    check_choice(rounding, ROUNDING, "rounding", fn)
    bp = check_cuts(sbp_cuts, 4, "sbp_cuts", fn)
    hr = check_cuts(heart_rate_cuts, 5, "heart_rate_cuts", fn)
    rr = check_cuts(resp_rate_cuts, 4, "resp_rate_cuts", fn)
    temp_cuts = check_cuts((temp_low, temp_high), 2, "temp_low/temp_high", fn)
    confusion_points = int(check_number(confusion_points, "confusion_points", fn))
    high_at = check_number(high_at, "high_at", fn)
    frame = require_columns(frame, MEWS_INPUTS, fn)
    level = consciousness_code(frame, "consciousness", fn)
    out = frame.with_columns(
        mews_sbp=banded(round_to(numeric(frame, "sbp", fn), 0, rounding), bp, (3, 2, 1, 0, 2)),
        mews_heart_rate=banded(round_to(numeric(frame, "heart_rate", fn), 0, rounding), hr,
                               (2, 1, 0, 1, 2, 3)),
        mews_resp_rate=banded(round_to(numeric(frame, "resp_rate", fn), 0, rounding), rr,
                              (2, 0, 1, 2, 3)),
        mews_temp=banded(round_to(numeric(frame, "temp", fn), 1, rounding), temp_cuts, (2, 0, 2),
                         closed="left"),
        # ACVPU codes 0 A, 1 C, 2 V, 3 P, 4 U -> AVPU points 0, (confusion), 1, 2, 3
        mews_consciousness=level.replace_strict({0.0: 0, 1.0: confusion_points, 2.0: 1, 3.0: 2,
                                                 4.0: 3}, default=None, return_dtype=pl.Int32),
    ).with_columns(totals("mews", MEWS_SUBSCORES))
    return out.with_columns(at_least("mews", high_at).alias("mews_high"))


def sirs(frame: pl.DataFrame, *, temp_high: float = 38.0, temp_low: float = 36.0,
         hr_high: float = 90, rr_high: float = 20, positive_at: int = 2,
         rounding: str = "none") -> pl.DataFrame:
    """Add the vital-sign criteria of SIRS (ACCP/SCCM 1992), all strict inequalities: temperature
    > 38 or < 36 °C; heart rate > 90 /min; respiratory rate > 20 /min. SIRS is met at ≥ 2.

    Only the vitals part is computed: the PaCO2 < 32 mmHg alternative to the respiratory
    criterion and the white-cell criterion (WBC > 12 or < 4 ×10⁹/L or > 10 % bands) need blood
    tests that home telemonitoring does not carry. ``sirs`` therefore counts 0–3 vital criteria
    and is a lower bound of the full 4-criterion SIRS count.

    Parameters
    ----------
    frame : pl.DataFrame
        Columns ``temp`` (°C), ``heart_rate`` (/min), ``resp_rate`` (/min); nulls are missing.
    temp_high, temp_low, hr_high, rr_high : float
        The published cut-offs (38.0, 36.0, 90, 20); a criterion is met strictly beyond them.
    positive_at : int
        Number of criteria from which ``sirs_positive`` is true (2).
    rounding : {"none", "half_up", "half_even"}
        SIRS is defined on the measured value, so by default nothing is rounded (38.04 °C meets
        "> 38"); ``half_up`` reads values at chart resolution like NEWS2.

    Returns
    -------
    pl.DataFrame
        The input with ``sirs_temp``, ``sirs_heart_rate``, ``sirs_resp_rate`` (Int32 0/1),
        ``sirs_partial``, ``sirs_complete``, ``sirs`` (null unless complete) and
        ``sirs_positive`` (three-valued).

    Examples
    --------
    >>> import polars as pl
    >>> obs = pl.DataFrame({"temp": [38.2, 37.0], "heart_rate": [95, 90], "resp_rate": [None, 20]})
    >>> sirs(obs).select("sirs", "sirs_partial", "sirs_positive").rows()
    [(None, 2, True), (0, 0, False)]
    """
    fn = "sirs"
    check_choice(rounding, ROUNDING, "rounding", fn)
    temp_low, temp_high = check_cuts((temp_low, temp_high), 2, "temp_low/temp_high", fn)
    hr_high, rr_high = check_number(hr_high, "hr_high", fn), check_number(rr_high, "rr_high", fn)
    positive_at = check_number(positive_at, "positive_at", fn)
    frame = require_columns(frame, SIRS_INPUTS, fn)
    temp = round_to(numeric(frame, "temp", fn), 1, rounding)
    out = frame.with_columns(
        sirs_temp=(pl.when(temp.is_null()).then(pl.lit(None, pl.Int32))
                   .when((temp > temp_high) | (temp < temp_low)).then(pl.lit(1, pl.Int32))
                   .otherwise(pl.lit(0, pl.Int32))),
        sirs_heart_rate=banded(round_to(numeric(frame, "heart_rate", fn), 0, rounding),
                               (hr_high,), (0, 1)),
        sirs_resp_rate=banded(round_to(numeric(frame, "resp_rate", fn), 0, rounding),
                              (rr_high,), (0, 1)),
    ).with_columns(totals("sirs", SIRS_SUBSCORES))
    return out.with_columns(at_least("sirs", positive_at).alias("sirs_positive"))
