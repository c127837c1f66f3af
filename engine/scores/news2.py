"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, December 2017).

Chart 1 of the RCP report, as encoded here (points for each band):

====================  ======  =======  =======  ===============  ========  ========  ======
parameter             3       2        1        0                1         2         3
====================  ======  =======  =======  ===============  ========  ========  ======
respiration /min      ≤8               9–11     12–20                      21–24     ≥25
SpO2 scale 1 %        ≤91     92–93    94–95    ≥96
SpO2 scale 2 %        ≤83     84–85    86–87    88–92, ≥93 air   93–94 O2  95–96 O2  ≥97 O2
air or oxygen                 oxygen            air
systolic BP mmHg      ≤90     91–100   101–110  111–219                              ≥220
pulse /min            ≤40              41–50    51–90            91–110    111–130   ≥131
consciousness                                   alert                                CVPU
temperature °C        ≤35.0            35.1–36  36.1–38.0        38.1–39.0 ≥39.1
====================  ======  =======  =======  ===============  ========  ========  ======

Scale 2 is only for patients with a clinician-prescribed 88–92 % SpO2 target (e.g. hypercapnic
respiratory failure); its high-SpO2 points apply only on oxygen, and ≥93 % on air scores 0.
"C" is *new* confusion (or delirium) and scores 3 like V, P and U.

Risk (RCP Table 2): total ≥7 high; 5–6 medium; otherwise any single parameter scoring 3 is
low-medium; otherwise low.
"""
from __future__ import annotations

import polars as pl

from ._chart import (ROUNDING, banded, check_choice, check_cuts, check_number, consciousness_code,
                     numeric, require_columns, round_to, totals)

REFERENCE = ("Royal College of Physicians. National Early Warning Score (NEWS) 2: standardising "
             "the assessment of acute-illness severity in the NHS. London: RCP, December 2017.")

#: the chart's parameters, in chart order; each gives a ``news2_<parameter>`` sub-score column
PARAMETERS = ("resp_rate", "spo2", "on_oxygen", "sbp", "heart_rate", "consciousness", "temp")
#: input columns (``spo2_scale`` is patient context; an absent column means scale 1)
INPUTS = ("resp_rate", "spo2", "spo2_scale", "on_oxygen", "sbp", "heart_rate", "consciousness",
          "temp")
SUBSCORES = tuple(f"news2_{p}" for p in PARAMETERS)
OUTPUTS = SUBSCORES + ("news2_partial", "news2_complete", "news2", "news2_risk")
#: risk bands, lowest first
RISKS = ("low", "low-medium", "medium", "high")


def _col(x: pl.Expr | str) -> pl.Expr:
    return pl.col(x) if isinstance(x, str) else x


def news2_expr_resp_rate(x: pl.Expr | str, *, cuts=(8, 11, 20, 24),
                         rounding: str = "half_up") -> pl.Expr:
    """Respiration-rate points: ≤8 → 3, 9–11 → 1, 12–20 → 0, 21–24 → 2, ≥25 → 3 (/min, integer
    resolution). ``cuts`` are the upper edges of the first four bands."""
    return banded(round_to(_col(x), 0, rounding), cuts, (3, 1, 0, 2, 3))


def news2_expr_spo2(spo2: pl.Expr | str, scale: pl.Expr | str, on_oxygen: pl.Expr | str, *,
                    scale1_cuts=(91, 93, 95), scale2_cuts=(83, 85, 87, 92, 94, 96),
                    rounding: str = "half_up") -> pl.Expr:
    """SpO2 points (%, integer resolution).

    Scale 1: ≤91 → 3, 92–93 → 2, 94–95 → 1, ≥96 → 0. Scale 2: ≤83 → 3, 84–85 → 2, 86–87 → 1,
    88–92 → 0, and above 92: on air 0, on oxygen 93–94 → 1, 95–96 → 2, ≥97 → 3. A null scale is
    scale 1. On scale 2 above the target range the points depend on ``on_oxygen``: a null there
    gives a null sub-score (unknown), never the on-air 0.
    """
    s = round_to(_col(spo2), 0, rounding)
    two = _col(scale).fill_null(1) == 2
    oxygen = _col(on_oxygen)
    c = scale2_cuts
    scale2 = (pl.when(s.is_null()).then(pl.lit(None, pl.Int32))
              .when(s <= c[0]).then(3).when(s <= c[1]).then(2).when(s <= c[2]).then(1)
              .when(s <= c[3]).then(0)
              # above the 88-92 target: the points depend on air or oxygen
              .when(oxygen.is_null()).then(pl.lit(None, pl.Int32))
              .when(oxygen == 0).then(0)
              .when(s <= c[4]).then(1).when(s <= c[5]).then(2).otherwise(3))
    scale1 = banded(s, scale1_cuts, (3, 2, 1, 0))
    return pl.when(two).then(scale2).otherwise(scale1).cast(pl.Int32)


def news2_expr_on_oxygen(x: pl.Expr | str, *, points: int = 2) -> pl.Expr:
    """Air or oxygen: oxygen (1) → 2, air (0) → 0, on either SpO2 scale."""
    x = _col(x)
    return (pl.when(x.is_null()).then(pl.lit(None, pl.Int32))
            .when(x == 1).then(pl.lit(points, pl.Int32)).otherwise(pl.lit(0, pl.Int32)))


def news2_expr_sbp(x: pl.Expr | str, *, cuts=(90, 100, 110, 219),
                   rounding: str = "half_up") -> pl.Expr:
    """Systolic BP points: ≤90 → 3, 91–100 → 2, 101–110 → 1, 111–219 → 0, ≥220 → 3 (mmHg)."""
    return banded(round_to(_col(x), 0, rounding), cuts, (3, 2, 1, 0, 3))


def news2_expr_heart_rate(x: pl.Expr | str, *, cuts=(40, 50, 90, 110, 130),
                          rounding: str = "half_up") -> pl.Expr:
    """Pulse points: ≤40 → 3, 41–50 → 1, 51–90 → 0, 91–110 → 1, 111–130 → 2, ≥131 → 3 (/min)."""
    return banded(round_to(_col(x), 0, rounding), cuts, (3, 1, 0, 1, 2, 3))


def news2_expr_consciousness(x: pl.Expr | str) -> pl.Expr:
    """Consciousness points from the ACVPU code 0..4: alert (0) → 0; new confusion (1), voice
    (2), pain (3), unresponsive (4) → 3."""
    return banded(_col(x), (0,), (0, 3))


def news2_expr_temp(x: pl.Expr | str, *, cuts=(35.0, 36.0, 38.0, 39.0),
                    rounding: str = "half_up") -> pl.Expr:
    """Temperature points (°C, 0.1 resolution): ≤35.0 → 3, 35.1–36.0 → 1, 36.1–38.0 → 0,
    38.1–39.0 → 1, ≥39.1 → 2."""
    return banded(round_to(_col(x), 1, rounding), cuts, (3, 1, 0, 1, 2))


def news2_expr_risk(partial: pl.Expr | str, complete: pl.Expr | str,
                    max_subscore: pl.Expr | str, *, medium_at: int = 5,
                    high_at: int = 7) -> pl.Expr:
    """Clinical risk: "high" (total ≥ ``high_at``), "medium" (≥ ``medium_at``), "low-medium" (a
    single parameter scoring 3), "low".

    An incomplete score has no risk (null) unless its known sub-scores already reach
    ``high_at``: missing parameters can only add points, so that score is high whatever they are.
    """
    partial, complete, top = _col(partial), _col(complete), _col(max_subscore)
    return (pl.when(partial >= high_at).then(pl.lit("high"))
            .when(~complete).then(pl.lit(None, pl.String))
            .when(partial >= medium_at).then(pl.lit("medium"))
            .when(top >= 3).then(pl.lit("low-medium"))
            .otherwise(pl.lit("low")))


def news2(frame: pl.DataFrame, *, rounding: str = "half_up", resp_rate_cuts=(8, 11, 20, 24),
          spo2_scale1_cuts=(91, 93, 95), spo2_scale2_cuts=(83, 85, 87, 92, 94, 96),
          oxygen_points: int = 2, sbp_cuts=(90, 100, 110, 219),
          heart_rate_cuts=(40, 50, 90, 110, 130), temp_cuts=(35.0, 36.0, 38.0, 39.0),
          medium_at: int = 5, high_at: int = 7) -> pl.DataFrame:
    """Add NEWS2 (RCP 2017) to a frame of observations, one score per row.

    Parameters
    ----------
    frame : pl.DataFrame
        Columns ``resp_rate`` (/min), ``spo2`` (%), ``on_oxygen`` (0 air, 1 oxygen), ``sbp``
        (mmHg), ``heart_rate`` (/min), ``consciousness`` (ACVPU letters "A", "C", "V", "P", "U"
        or the telemetry codes 0..4, "C"/1 being *new* confusion), ``temp`` (°C) and optionally
        ``spo2_scale`` (1 or 2; an absent column or a null means scale 1). Nulls are missing
        readings. Other columns are kept.
    rounding : {"half_up", "half_even", "none"}
        How readings are brought to the chart's printed resolution before banding: integers,
        temperature to 0.1 °C. ``half_up`` (default) rounds halves upwards, as a nurse reads a
        chart: 38.05 → 38.1 (1 point), 38.04 → 38.0 (0), 90.5 → 91 (2), 90.4 → 90 (3). It is
        *not* Python's ``round``, which rounds halves to even. With ``none`` the bands are read
        as contiguous intervals (e.g. 38.04 °C lies in (38.0, 39.0] and scores 1), so no reading
        ever falls between bands.
    resp_rate_cuts, spo2_scale1_cuts, spo2_scale2_cuts, sbp_cuts, heart_rate_cuts, temp_cuts
        Upper edges (inclusive) of the chart's bands, published values by default; see each
        ``news2_expr_*`` function for the points of each band.
    oxygen_points : int
        Points for supplemental oxygen (2).
    medium_at, high_at : int
        Totals from which the risk is medium (5) and high (7).

    Returns
    -------
    pl.DataFrame
        The input with ``news2_<parameter>`` sub-scores (Int32, null when the reading is
        missing), ``news2_partial`` (Int32, sum of the known sub-scores), ``news2_complete``
        (Boolean), ``news2`` (Int32 total, null unless complete, so a partial sum is never
        mistaken for a score) and ``news2_risk`` ("low", "low-medium", "medium", "high"; null
        when incomplete, except "high" when the known sub-scores alone reach ``high_at`` —
        missing parameters can only add points).

    Examples
    --------
    >>> import polars as pl
    >>> obs = pl.DataFrame({"resp_rate": [16, 26], "spo2": [97, 90], "on_oxygen": [0, 1],
    ...                     "sbp": [125, 95], "heart_rate": [72, 118], "consciousness": ["A", "C"],
    ...                     "temp": [36.8, None]})
    >>> news2(obs).select("news2", "news2_partial", "news2_complete", "news2_risk").rows()
    [(0, 0, True, 'low'), (None, 15, False, 'high')]
    """
    fn = "news2"
    check_choice(rounding, ROUNDING, "rounding", fn)
    rr = check_cuts(resp_rate_cuts, 4, "resp_rate_cuts", fn)
    s1 = check_cuts(spo2_scale1_cuts, 3, "spo2_scale1_cuts", fn)
    s2 = check_cuts(spo2_scale2_cuts, 6, "spo2_scale2_cuts", fn)
    bp = check_cuts(sbp_cuts, 4, "sbp_cuts", fn)
    hr = check_cuts(heart_rate_cuts, 5, "heart_rate_cuts", fn)
    tc = check_cuts(temp_cuts, 4, "temp_cuts", fn)
    oxygen_points = int(check_number(oxygen_points, "oxygen_points", fn))
    medium_at, high_at = (check_number(medium_at, "medium_at", fn),
                          check_number(high_at, "high_at", fn))
    frame = require_columns(frame, [c for c in INPUTS if c != "spo2_scale"], fn)

    scale = (numeric(frame, "spo2_scale", fn, allowed=(1.0, 2.0))
             if "spo2_scale" in frame.columns else pl.lit(1.0))
    oxygen = numeric(frame, "on_oxygen", fn, allowed=(0.0, 1.0))
    subscores = {
        "news2_resp_rate": news2_expr_resp_rate(numeric(frame, "resp_rate", fn), cuts=rr,
                                                rounding=rounding),
        "news2_spo2": news2_expr_spo2(numeric(frame, "spo2", fn), scale, oxygen, scale1_cuts=s1,
                                      scale2_cuts=s2, rounding=rounding),
        "news2_on_oxygen": news2_expr_on_oxygen(oxygen, points=oxygen_points),
        "news2_sbp": news2_expr_sbp(numeric(frame, "sbp", fn), cuts=bp, rounding=rounding),
        "news2_heart_rate": news2_expr_heart_rate(numeric(frame, "heart_rate", fn), cuts=hr,
                                                  rounding=rounding),
        "news2_consciousness": news2_expr_consciousness(
            consciousness_code(frame, "consciousness", fn)),
        "news2_temp": news2_expr_temp(numeric(frame, "temp", fn), cuts=tc, rounding=rounding),
    }
    # one query (a pipeline evaluates NEWS2 once per chunk: each polars call saved counts)
    return (frame.lazy().with_columns(**subscores).with_columns(totals("news2", SUBSCORES))
            .with_columns(news2_expr_risk(
                "news2_partial", "news2_complete", pl.max_horizontal(SUBSCORES),
                medium_at=medium_at, high_at=high_at).alias("news2_risk"))
            .collect())
