"""Stateful, threshold and CGM detectors: their registry entries and documentation.

The kernels live in :mod:`engine.detectors.kernels_stateful`; this module declares each one as a
detector a spec can name, with the semantics a clinician or a rule author needs:

=================  ==================================================  =============
fn                 spec form (example)                                 output
=================  ==================================================  =============
``ewma``           ``{metric: weight, fn: ewma, halflife: 2d}``        metric's unit
``macd``           ``{metric: weight, fn: macd, fast: 15h, slow: 3d}`` metric's unit
``cusum_up``       ``{metric: weight, fn: cusum_up, baseline: 14d,     metric's unit
                   k: 0.5}``
``cusum_down``     ``{metric: spo2, fn: cusum_down, baseline: 14d,     metric's unit
                   k: 1.0}``
``zscore``         ``{metric: heart_rate, fn: zscore, window: 14d,     dimensionless
                   lag: 1d}``
``time_above``     ``{metric: glucose, fn: time_above,                 minutes
                   threshold: 250}``
``time_below``     ``{metric: spo2, fn: time_below, threshold: 88}``   minutes
``events_below``   ``{metric: glucose, fn: events_below,               count
                   threshold: 54, window: 1d}``
``events_above``   ``{metric: glucose, fn: events_above,               count
                   threshold: 250, window: 1d}``
``time_in_range``  ``{metric: glucose, fn: time_in_range, low: 70,     percent
                   high: 180, window: 14d}``
``coverage``       ``{metric: glucose, fn: coverage, window: 14d}``    percent
``minutes_above``  ``{metric: glucose, fn: minutes_above,              minutes
                   threshold: 250, window: 120m, interval: 5m}``
``minutes_below``  ``{metric: glucose, fn: minutes_below,              minutes
                   threshold: 54, window: 8h, interval: 5m}``
=================  ==================================================  =============

Common semantics, for every detector here: the output at a row depends only on that row and the
earlier rows of its series (ties in ``ts`` are broken by row order), and a null reading changes no
state. What a null row gets is said in each detector's documentation.

>>> import polars as pl
>>> from datetime import datetime, timedelta, timezone
>>> from engine.detectors import evaluate
>>> t0 = datetime(2024, 1, 1, 3, 0, tzinfo=timezone.utc)
>>> glucose = [100.0, 62.0, 52.0, 50.0, 51.0, 53.0, 60.0]
>>> tel = pl.DataFrame({"patient_id": "p1", "metric": "glucose", "value": glucose,
...                     "ts": [t0 + timedelta(minutes=5 * i) for i in range(7)]})
>>> out = evaluate(tel, {
...     "hypo_l2": {"metric": "glucose", "fn": "events_below", "threshold": 54, "window": "1d"},
...     "low_for": {"metric": "glucose", "fn": "time_below", "threshold": 54},
...     "tir": {"metric": "glucose", "fn": "time_in_range", "low": 70, "high": 180,
...             "window": "1d"}})
>>> out.select("value", "hypo_l2", "low_for", "tir").to_dicts()[4]
{'value': 51.0, 'hypo_l2': 0.0, 'low_for': 10.0, 'tir': 25.0}
>>> out["hypo_l2"].to_list()   # below 54 from 03:10; 15 minutes later, at 03:25, one episode
[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
"""
from __future__ import annotations

from . import kernels_stateful as k
from .registry import ALL_HISTORY, DURATION, FLOAT, INT, Param, register

#: EWMA weights older than this many half-lives are below 2**-40 ≈ 1e-12 of the newest one
HALFLIVES_OF_HISTORY = 40

_TIES = """Rows tied in ts are taken in row order, so a
    row's output never depends on later rows."""
#: what a null row gets, per family of detectors (the kernels see a null reading as NaN)
NULLS = f"""
    Nulls and ties: a null reading changes no state, and a null row gets the output of the
    previous reading (null before the first reading). {_TIES}"""
NULLS_AT_T = f"""
    Nulls and ties: a null reading changes no state; a null row gets the output at its own
    time t (the window ending at t). {_TIES}"""
NULLS_Z = f"""
    Nulls and ties: null readings never enter the baseline; a null row's output is null (there
    is no reading to score). {_TIES}"""

THRESHOLD = Param("threshold", FLOAT, doc="the level, in the metric's unit (strict inequality)")
MAX_GAP_RUN = Param("max_gap", DURATION, required=False, default="0m",
                    doc="a gap between two readings longer than this breaks the run; 0m = no limit")
MAX_GAP_HOLD = Param("max_gap", DURATION, required=False, default="15m",
                     doc="a reading holds its value until the next one, at most this long; "
                         "0m = no limit")
INTERVAL = Param("interval", DURATION, required=False, default="0m",
                 doc="the sampling interval a run's latest reading stands for (consensus CGM "
                     "events: the sensor's, e.g. 5m)")
WINDOW = Param("window", DURATION, doc="length W of the trailing window, e.g. '1d' or '14d'")


def _all_history(params: dict) -> int:
    return ALL_HISTORY


def _doc(text: str, *, semantics: str = NULLS) -> str:
    """A detector's documentation: its own text (maths, false alarms, reference) with the common
    null and tie semantics inserted before the 'False alarms' paragraph."""
    marker = "\n\n    False alarms:"
    body, found, rest = text.strip("\n").partition(marker)
    return f"{body}\n{semantics}{found}{rest}"


# --- smoothing -----------------------------------------------------------------------------------

register(
    "ewma", kernel=k.ewma,
    params=(Param("halflife", DURATION, doc="time for a reading's weight to halve, e.g. '2d'"),),
    lookback=lambda p: HALFLIVES_OF_HISTORY * p["halflife"], output="value", doc=_doc("""
Time-aware exponentially weighted moving average (metric's unit).

    y(t) = sum_j w_j x_j / sum_j w_j over the readings so far, w_j = 0.5 ** ((t - t_j) / h),
    h = halflife: the weight of the past halves every h of elapsed time whatever the number of
    readings in between, so irregular or missed readings are handled by the clock, not by
    counting samples. O(1) per reading: W <- W * 0.5 ** (dt / h) + 1, y <- y + (x - y) / W.
    The first reading initialises y. Tied readings (dt = 0) are not decayed against each
    other: they are averaged with equal weight. This is the normalised ('adjust=True') EWMA,
    equal to pandas' `Series.ewm(halflife=h, times=ts).mean()`; with regular sampling it
    converges to the recursive y <- a y + (1 - a) x after a few half-lives, without the
    recursive form's over-weighting of the first reading. halflife 0 gives the latest reading
    (ties averaged). Weights never reach 0: the lookback is 40 half-lives (older weights
    < 1e-12 of the newest).

    False alarms: an EWMA smooths but does not alert by itself; rules compare it with a
    personal level, or use `macd`. A half-life shorter than the sampling interval follows every
    artefact.

    Reference: Hunter, 'The exponentially weighted moving average', J Qual Technol 1986;
    Eckner, 'Algorithms for unevenly spaced time series', 2019 (time-aware EMA)."""))

register(
    "macd", kernel=k.macd,
    params=(Param("fast", DURATION, doc="half-life of the short (fast) EWMA, e.g. '15h'"),
            Param("slow", DURATION, doc="half-life of the long (slow) EWMA, e.g. '3d'")),
    lookback=lambda p: HALFLIVES_OF_HISTORY * max(p["fast"], p["slow"]), output="value",
    doc=_doc("""
Moving average convergence-divergence: fast EWMA minus slow EWMA (metric's unit).

    macd = ewma(halflife=fast) - ewma(halflife=slow), both as in `ewma`. Positive when the
    recent level has risen above the longer-term level: for daily weight in heart failure, a
    fluid gain. 0 at the first reading; near 0 on a stable series; a step change gives a
    transient that decays over the slow half-life. Zhang et al. used EWMAs of daily weight
    with spans of 2 and 10 days (alpha = 2 / (span + 1) per daily reading). The parameters here
    are half-lives in time, not spans in readings: a span of N daily readings is a half-life of
    ln 2 / -ln(1 - 2 / (N + 1)) days, so span 2 ~ `fast: 15h` and span 10 ~ `slow: 83h`
    (3d11h). `fast: 2d, slow: 10d` is a slower, smoother detector.

    False alarms: in TEN-HMS, rules of thumb on weight (+2.3 kg in 3 days) gave ~58 % false
    alerts and weight MACD 9 % (but 20 % sensitivity); at a fixed false-alarm budget MACD was
    the more sensitive (Gyllensten). Set the decision level per patient or programme, and weigh
    at the same time of day (clothing and meals move weight by about 1 kg).

    Reference: Zhang et al., 'Detecting heart failure decompensation using weight
    telemonitoring (TEN-HMS)', Eur J Heart Fail 2009; Gyllensten et al., 'Early indication of
    decompensated heart failure in patients on home-telemonitoring', JMIR Med Inform 2016."""))


# --- CUSUM against a frozen personal baseline ----------------------------------------------------

_CUSUM_PARAMS = (
    Param("baseline", DURATION,
          doc="the baseline period from the series' first reading, e.g. '14d'"),
    Param("k", FLOAT, doc="slack (reference value) in the metric's unit, about half the "
                          "shift worth detecting"),
)
_CUSUM_DOC = """
One-sided {side} CUSUM against the patient's own frozen baseline (metric's unit).

    mu0 = mean of the non-null readings with ts <= t0 + baseline, t0 the series' first non-null
    reading (both ends included); then, from S = 0, for each later reading
        {formula}
    Output S_t; null during the baseline period. S never restarts by itself: rules compare it
    with a decision interval h (`cusum > 2.0`) and the episode and cooldown stages deal with
    repeated firings. (Page's restart after a signal would make the condition flap while the
    shift lasts; without it the condition holds as long as the evidence does and falls back
    once readings return within k of mu0.) The baseline is frozen, not running: a running
    baseline learns a slow drift (weight creeping up 0.2 kg a day) and the CUSUM would never
    see it. Needs the series from its first reading (lookback: all history); the baseline
    starts at the first reading the evaluation sees, so evaluate from enrolment.

    False alarms: k is an allowance per reading, about half the smallest shift worth detecting.
    In units of the patient's usual SD of a reading, k = 0.5 with h = 4 gives an in-control
    average run length of about 168 readings (h = 5: about 465), i.e. with daily weights
    roughly two or one false alarms a year; a 1-SD shift is then found after about 8 (10)
    readings. k = 0 makes S a reflected random walk that grows with noise alone and crosses
    any h eventually. A baseline of a single reading, or of an unstable period (just after
    discharge), is a poor mu0: cover several readings of a stable period.

    Reference: Page, 'Continuous inspection schemes', Biometrika 1954; Montgomery,
    Introduction to Statistical Quality Control, ch. 9 (the tabular CUSUM)."""

register("cusum_up", kernel=k.cusum_up, params=_CUSUM_PARAMS, lookback=_all_history,
         output="value", doc=_doc(_CUSUM_DOC.format(
             side="upper", formula="S_t = max(0, S_{t-1} + (x_t - mu0 - k))")))

register("cusum_down", kernel=k.cusum_down, params=_CUSUM_PARAMS, lookback=_all_history,
         output="value", doc=_doc(_CUSUM_DOC.format(
             side="lower", formula="S_t = max(0, S_{t-1} + (mu0 - k - x_t))   "
                                   "(positive: the size of the accumulated fall)")))


# --- z-score against a lagged personal baseline --------------------------------------------------

register(
    "zscore", kernel=k.zscore,
    params=(WINDOW,
            Param("lag", DURATION, doc="how long before now the baseline ends, e.g. '1d'"),
            Param("min_count", INT, required=False, default=3,
                  doc="fewest baseline readings for a z-score (default 3)")),
    lookback=lambda p: p["window"] + p["lag"], output="dimensionless", doc=_doc("""
z-score of the reading against the patient's recent baseline (dimensionless).

    z = (x_t - mean(B)) / sd(B), sd with ddof = 1, where B holds the non-null readings with
    t - lag - window <= ts <= t - lag (both ends included). Null at a null row, when B has
    fewer than min_count (or 2) readings, or when all of B is equal (sd = 0). The lag keeps
    the change being detected out of its own baseline: with lag 0 the baseline includes the
    current reading (and earlier ties), which pulls the mean towards it and bounds |z| by
    (n - 1) / sqrt(n) (1.15 for n = 3), so a threshold like z > 3 is unreachable on small
    baselines; use a lag of at least one sampling interval. O(n) per series: two pointers over
    compensated running sums shifted by a reading inside the baseline.

    False alarms: with n baseline readings the sd is itself noisy (n = 3: two degrees of
    freedom); raise min_count for rules acting on |z|. A baseline taken during an illness
    makes the next illness look normal. A nearly constant baseline (a device repeating its
    last value) gives a very large |z| for a small change: pair with an absolute condition.

    Reference: personal baselines in COPD home telemonitoring, taken over the first weeks of
    follow-up, cut false alarms (see rules/copd.yaml and its sources).""", semantics=NULLS_Z))


# --- time beyond a threshold ---------------------------------------------------------------------

_TIME_DOC = """
Minutes the readings have stayed {side} a threshold, up to this row.

    At a reading x_t {cond} threshold: (t - t_s + interval) in minutes, t_s the time of the
    first reading of the current unbroken run of such readings; 0.0 at a reading that is not,
    so that rules read naturally: `{fn} > 15`. Strict inequality: a reading equal to the
    threshold ends a run. A null reading neither breaks nor extends the run. With interval 0m
    (the default) the run is measured between readings: sampled every 5 min, a run of 4
    readings lasts 15 minutes and the reading that starts a run reads 0. With interval set to
    the sampling interval, each reading stands for that long, as the CGM consensus counts:
    3 readings 5 minutes apart last 15 minutes with interval 5m (the events_below detector
    counts the same way). A gap longer than max_gap between two
    readings breaks the run (the reading after the gap starts a new one); max_gap 0m (the
    default) never breaks it. Lookback: all history (a run may be arbitrarily long).

    False alarms: sparse readings make a run look continuous across hours without data: set
    max_gap to about twice the sampling interval of continuous sensors (30m for CGM, 2m for
    per-minute oximetry). One artefact (probe off, compression low at night) starts a run;
    requiring a duration here (`{fn} > 15`) filters one-off readings."""

register("time_above", kernel=k.time_above, params=(THRESHOLD, MAX_GAP_RUN, INTERVAL),
         lookback=_all_history, output="minutes",
         doc=_doc(_TIME_DOC.format(side="above", cond=">", fn="time_above")))

register("time_below", kernel=k.time_below, params=(THRESHOLD, MAX_GAP_RUN, INTERVAL),
         lookback=_all_history, output="minutes",
         doc=_doc(_TIME_DOC.format(side="below", cond="<", fn="time_below")))


# --- CGM episodes --------------------------------------------------------------------------------

_EVENT_PARAMS = (
    THRESHOLD,
    Param("min_duration", DURATION, required=False, default="15m",
          doc="how long readings must stay beyond the threshold to make an episode"),
    WINDOW,
    Param("end_duration", DURATION, required=False, default="15m",
          doc="how long readings must stay recovered to end an episode"),
    Param("end_margin", FLOAT, required=False, default=0.0,
          doc="recovered means at least this far back past the threshold (metric's unit)"),
    MAX_GAP_RUN,
    INTERVAL,
)
_EVENT_DOC = """
Number of episodes {side} a threshold in the trailing window ({what}).

    An episode starts with an unbroken run of readings {side} the threshold and is confirmed
    (it *qualifies*) at the first reading of the run at which the run has lasted min_duration,
    a run lasting from its first reading to one interval after its latest: with interval 0m
    (the default) readings at 0, 5, 10 and 15 min qualify at 15 min for min_duration 15m and
    readings at 0 and 14 min do not; with interval 5m — each reading standing for the 5 minutes
    of a CGM's sampling, as the consensus counts — readings at 0, 5 and 10 min qualify at
    10 min. A reading not {side} the threshold before then breaks the run. Once confirmed, the
    episode lasts until an unbroken run of recovered readings ({recovered}) has lasted
    end_duration, measured the same way;
    readings back {side} the threshold before then continue the same episode, and only after
    the end can a new one begin. The output at row i counts the episodes whose qualifying
    reading q is at or before row i with t - window <= q <= t: ongoing episodes included, a
    long episode counted once, at the time it qualified. A gap longer than max_gap between two
    readings forgets any run or episode (0m, the default: no limit). 0 before any episode.
    Lookback: all history (an episode may be arbitrarily long).
{consensus}
    False alarms: {guidance}

    Reference: Battelino et al., 'Clinical targets for continuous glucose monitoring data
    interpretation: recommendations from the international consensus on time in range',
    Diabetes Care 2019; Danne et al., 'International consensus on use of continuous glucose
    monitoring', Diabetes Care 2017."""

register("events_below", kernel=k.events_below, params=_EVENT_PARAMS, lookback=_all_history,
         output="count", doc=_doc(_EVENT_DOC.format(
             side="below", what="CGM hypoglycaemia", recovered="x >= threshold + end_margin",
             consensus="""
    Consensus events (Danne 2017; Battelino 2019): level 1 `threshold: 70`, level 2
    `threshold: 54`, both with the default 15-minute start and end and `interval` the sensor's
    sampling interval (`5m` for most sensors), so that three 5-minute readings make 15 minutes,
    as ``engine.scores.cgm_metrics`` counts them. A level-2 event ends at >= 70 mg/dL, as a
    level-1 one: `threshold: 54, end_margin: 16`. Prolonged hypoglycaemia:
    `threshold: 54, min_duration: 2h` [to confirm].
""",
             guidance="""sensor compression at night gives short false lows: the 15-minute
    minimum is the consensus guard against them. Gaps in a trace can join two lows into one or
    stretch one: set max_gap (e.g. 30m) on traces with dropouts."""), semantics=NULLS_AT_T))

register("events_above", kernel=k.events_above, params=_EVENT_PARAMS, lookback=_all_history,
         output="count", doc=_doc(_EVENT_DOC.format(
             side="above", what="CGM hyperglycaemia", recovered="x <= threshold - end_margin",
             consensus="""
    Consensus level-2 hyperglycaemia: `threshold: 250`, with the default 15-minute start and
    end.
""",
             guidance="""post-meal peaks above 250 mg/dL for 15 minutes are common in type 1
    diabetes; count over a day or more and alert on a rate rather than on one event."""),
             semantics=NULLS_AT_T))


# --- time in range and coverage ------------------------------------------------------------------

def _hold_lookback(params: dict) -> int:
    return params["window"] + params["max_gap"] if params["max_gap"] > 0 else ALL_HISTORY


_HOLD = """Time-weighted: each non-null reading holds its value from its time until the next
    reading, at most max_gap (default 15m; beyond it the time is missing, not counted); the
    reading at or before t holds only up to t, never after. Only the part of each hold inside
    [t - window, t] counts, so a reading just before the window's start holds into it
    (lookback: window + max_gap; all history for max_gap 0m, no limit). Tied readings: the last
    of the tie holds."""

register(
    "time_in_range", kernel=k.time_in_range,
    params=(Param("low", FLOAT, doc="lower bound of the range, included (metric's unit)"),
            Param("high", FLOAT, doc="upper bound of the range, included (metric's unit)"),
            WINDOW, MAX_GAP_HOLD),
    lookback=_hold_lookback, output="percent", doc=_doc(f"""
Percent of the covered time in the trailing window with readings in [low, high].

    TIR = 100 * (held time with low <= x <= high) / (held time): both bounds included (70 and
    180 mg/dL are in range). Null when no time is covered, e.g. at the first reading, whose
    hold has not begun. Time below or above range (strict bounds) are CGM scores
    (engine.scores), not this detector.
    {_HOLD}

    False alarms: a TIR over too little data is meaningless: the consensus asks for 14 days
    with at least 70 % of possible readings, so pair it with `coverage >= 70`. Targets:
    TIR > 70 % (> 50 % for older or high-risk people).

    Reference: Battelino et al., Diabetes Care 2019 (international consensus on time in
    range).""", semantics=NULLS_AT_T))

register(
    "coverage", kernel=k.coverage, params=(WINDOW, MAX_GAP_HOLD), lookback=_hold_lookback,
    output="percent", doc=_doc(f"""
Percent of the trailing window covered by data (data sufficiency).

    coverage = 100 * (held time in [t - window, t]) / window; 0 before the first reading, null
    for a zero window. With 5-minute CGM readings and max_gap 15m a dropped reading costs
    nothing and a 2-hour dropout costs 1 h 45 min.
    {_HOLD}

    False alarms: early in a recording the window reaches back before the first reading, so
    coverage stays low until a full window of data exists: the intended reading (not enough
    data yet).

    Reference: Battelino et al., Diabetes Care 2019: 14 days with at least 70 % of possible
    readings.""", semantics=NULLS_AT_T))


# --- cumulative time beyond a threshold in a trailing window -------------------------------------

INTERVAL_LATEST = Param("interval", DURATION, required=False, default="0m",
                        doc="what the latest reading of the window stands for: the sensor's "
                            "sampling interval, e.g. 5m for CGM (default 0m)")

_MINUTES_DOC = """
Cumulative minutes {side} a threshold in the trailing window (time-weighted readings).

    The sum, over the non-null readings j of the window with x_j {cond} threshold, of the time
    each one stands for: a reading holds its value until the next reading, at most max_gap
    (default 15m; 0m: no limit), and the latest reading (the row's own at a non-null row)
    stands for `interval` (not capped by max_gap), so the output depends on no later row.
    Readings back across the threshold pause the count and later ones add to it: unlike
    `time_{side}` (the current unbroken run), the time need not be one run. Strict inequality:
    a reading equal to the threshold is not {side} it. Null when the window holds no reading
    (no data is not zero minutes; window 0m is always null). Lookback: window (the holds of
    the window's readings end at readings inside it).

    Window: the readings with t - window < ts <= t. The left end is open, unlike the closed
    windows of `mean` or `count`, because this sums time and each reading brings its own: with
    readings every 5 minutes a 120-minute window holds 24 readings whose 24 five-minute shares
    make 120 minutes; with both ends closed it would hold 25, and a trace {side} the threshold
    all along would read 125 minutes in a 120-minute period. A reading exactly `window` before
    t is out, one microsecond later is in.

    Worked example, CGM every 5 minutes with `threshold: 250, window: 120m, max_gap: 30m,
    interval: 5m`: 18 consecutive readings above 250 read 90 at the 18th (17 holds of 5
    minutes, plus 5 for the 18th) and 17 read 85; once the window holds 24 readings all above,
    120, and it stays 120 while they do. With a dropout, readings at 10:00 (300), 10:45 (300)
    and 10:50 (200) read 35 at 10:50 (the 10:00 reading holds 30 minutes, max_gap, of its
    45-minute gap; the 10:45 one 5; 200 is not above); a reading of 240 at 12:05 reads 5 (the
    10:00 reading has left the window (10:05, 12:05]; its hold into it is not counted).

    Compared with `time_in_range`, which uses the same holds: time_in_range counts the part of
    each hold inside [t - window, t], a reading before the window holding into it and the
    latest reading holding only up to t (nothing at its own row); minutes_{side} counts the
    whole holds of the readings inside (t - window, t] and lets the latest one stand for
    `interval`, as the CGM consensus counts each reading for its sampling interval. On a
    regular trace with `interval` the sampling interval, it is the held time of
    [t - window + interval, t + interval]: the row's own reading counts at once.
    At a null row the window ends at the row's time and the latest reading before it stands
    for `interval`.
{consensus}
    False alarms: {guidance}

    Reference: {reference}"""

register(
    "minutes_above", kernel=k.minutes_above,
    params=(THRESHOLD, WINDOW, MAX_GAP_HOLD, INTERVAL_LATEST),
    lookback=lambda p: p["window"], output="minutes", doc=_doc(_MINUTES_DOC.format(
        side="above", cond=">",
        consensus="""
    Consensus: extended hyperglycaemia in clinical trials is more than 250 mg/dL for at least
    90 cumulative minutes within a 120-minute period [to confirm]: `minutes_above >= 90` with
    `threshold: 250, window: 120m, interval: 5m` (the sensor's sampling interval) and
    `max_gap: 30m` (about twice it), so that one missed reading does not break the count.
""",
        guidance="""a dropout shorter than max_gap is filled with the reading before it,
    so a high reading followed by 25 minutes without data counts 25 minutes: keep max_gap near
    twice the sampling interval. Post-meal peaks above 250 mg/dL for an hour are common in
    type 1 diabetes; the 90-of-120-minute criterion is meant to pass over them.""",
        reference="""Battelino T et al. Continuous glucose monitoring and metrics for
    clinical trials: an international consensus statement. Lancet Diabetes Endocrinol
    2023;11(1):42-57."""), semantics=NULLS_AT_T))

register(
    "minutes_below", kernel=k.minutes_below,
    params=(THRESHOLD, WINDOW, MAX_GAP_HOLD, INTERVAL_LATEST),
    lookback=lambda p: p["window"], output="minutes", doc=_doc(_MINUTES_DOC.format(
        side="below", cond="<",
        consensus="""
    E.g. cumulative minutes of level-2 hypoglycaemia over a night:
    `{threshold: 54, window: 8h, interval: 5m, max_gap: 30m}`; the per-episode count is
    `events_below`, the share of a 14-day period the `engine.scores` CGM metrics.
""",
        guidance="""sensor compression at night gives short false lows, each counting
    its readings' minutes: require more cumulative minutes than one compression lasts (the
    consensus episode needs 15 minutes), or use `events_below`. A dropout shorter than max_gap
    is filled with the reading before it.""",
        reference="""Battelino T et al., Lancet Diabetes Endocrinol 2023;11(1):42-57
    (CGM metrics for clinical trials); Battelino T et al., Diabetes Care 2019;42:1593-1603
    (international consensus on time in range)."""), semantics=NULLS_AT_T))
