"""Window-statistic detectors: their registry entries and documentation.

The kernels live in :mod:`engine.detectors.kernels_window`; this module declares each one as a
detector a spec can name (``{metric: weight, fn: delta, window: 3d}``), with the semantics a
clinician or a rule author needs.
"""
from __future__ import annotations

from . import kernels_window as k
from .registry import ALL_HISTORY, DURATION, Param, register

WINDOW = Param("window", DURATION, doc="length W of the trailing window, e.g. '6h' or '3d'")
LAG = Param("lag", DURATION, required=False, default="0m", elide=True,
            doc="how long before the row's time the window ends, e.g. '2d' (default 0m: at it)")
LIMIT = Param("limit", DURATION, doc="longest gap between readings that is not a silence")
GAP = Param("gap", DURATION, required=False, default="0m",
            doc="how long before the row's time the previous reading must be, at least "
                "(default 0m: any earlier row)")


def _window(params: dict) -> int:
    # without a lag (or lag 0m) a spec resolves to the plain form, whose params have no "lag"
    return params["window"] + params.get("lag", 0)


def _all_history(params: dict) -> int:
    return ALL_HISTORY


SEMANTICS = """
    Window: at a row with time t the window holds the readings of the same series with
    t - lag - W <= ts <= t - lag, both ends included; lag is 0m unless the spec gives one.
    With lag 0 readings tied with t are included only when they come before the row (row order
    breaks ties), so a row's output never depends on later rows; with a lag every reading of
    the window is before the row (the row's own reading is not in it).
    A lag moves the whole window back: `{metric: heart_rate, fn: median, window: 14d, lag: 2d}`
    is the usual resting pulse of the 14 days before the last 2 days, a personal baseline that
    leaves out the change being detected (compare it with a recent `median` in the rule); the
    output is the statistic of the readings of [t - lag - W, t - lag], whatever readings came
    after (lookback: window + lag). A spec without a lag, or with lag 0m, is the detector as it
    was before lags existed (same output, bit for bit, and the same key).
    Nulls: null readings never enter a window; a null row still gets the statistic of the
    non-null readings in its window. Output is null where the window holds too few readings."""


def _doc(head: str, body: str, guidance: str, ref: str = "") -> str:
    doc = f"{head}\n{body}\n{SEMANTICS}\n\n    False alarms: {guidance}"
    return doc + (f"\n\n    Reference: {ref}" if ref else "")


register("mean", kernel=k.rolling_mean_lagged, plain_kernel=k.rolling_mean,
         params=(WINDOW, LAG), lookback=_window, output="value",
         doc=_doc(
    "Mean of the readings in the trailing window (metric's unit).",
    "    mean = sum(x) / n over the n non-null readings; null when n = 0. Computed with a\n"
    "    compensated running sum, exact to a few ulps whatever the magnitudes.",
    "a mean over a window that holds one reading is that reading; pair it with `count` when\n"
    "    a rule should need several readings."))

register("sum", kernel=k.rolling_sum_lagged, plain_kernel=k.rolling_sum, params=(WINDOW, LAG),
         lookback=_window, output="value", doc=_doc(
    "Sum of the readings in the trailing window (metric's unit), e.g. steps over 7d.",
    "    Null (not 0) when the window holds no reading: no data is not zero activity.",
    "a missing day lowers a sum; compare with `count` or use `mean` when readings may be missed."))

register("count", kernel=k.rolling_count_lagged, plain_kernel=k.rolling_count,
         params=(WINDOW, LAG), lookback=_window, output="count",
         doc=_doc("Number of non-null readings in the trailing window (0 when empty, never null).",
                  "    Useful to require enough data before trusting another detector, or to\n"
                  "    count events (falls) over a period.",
                  "duplicates removed at ingest cannot inflate a count."))

register("std", kernel=k.rolling_std_lagged, plain_kernel=k.rolling_std, params=(WINDOW, LAG),
         lookback=_window, output="value", doc=_doc(
    "Sample standard deviation (ddof = 1) of the readings in the trailing window.",
    "    sqrt(sum((x - mean)^2) / (n - 1)); null with fewer than 2 readings, 0 for a constant\n"
    "    window. Running sums are shifted by a value inside the window and re-centred exactly\n"
    "    when the mean drifts away from it, so values from 1e-3 to 1e6 keep ~1e-12 relative error.",
    "with few readings the sample std is itself very noisy (n = 2 gives one degree of freedom);\n"
    "    require a minimum `count` in rules built on it.",
    "Welford (1962); Chan, Golub & LeVeque, 'Algorithms for computing the sample variance'\n"
    "    (1983)."))

register("min", kernel=k.rolling_min_lagged, plain_kernel=k.rolling_min, params=(WINDOW, LAG),
         lookback=_window, output="value", doc=_doc(
    "Smallest reading in the trailing window (metric's unit).",
    "    Monotonic deque: O(n) for the whole series whatever the window.",
    "a single artefactual low reading (a slipped SpO2 probe) sets the min for a whole window;\n"
    "    prefer `median` or a `for:` duration for noisy sensors.",
    "Lemire, 'Streaming maximum-minimum filter using no more than three comparisons per element'"
    " (2006)."))

register("max", kernel=k.rolling_max_lagged, plain_kernel=k.rolling_max, params=(WINDOW, LAG),
         lookback=_window, output="value", doc=_doc(
    "Largest reading in the trailing window (metric's unit).",
    "    Monotonic deque: O(n) for the whole series whatever the window.",
    "one artefactual high reading sets the max for a whole window; see `min`.",
    "Lemire (2006)."))

register("median", kernel=k.rolling_median_lagged, plain_kernel=k.rolling_median,
         params=(WINDOW, LAG), lookback=_window, output="value",
         doc=_doc("Median of the readings in the trailing window (metric's unit).",
                  "    Middle reading, or the mean of the two middle readings when n is even.\n"
                  "    A sorted buffer with binary-search insertion and removal.",
                  "robust to a single artefact, so the detector of choice for noisy home sensors;\n"
                  "    it lags a genuine step change by half the window."))

register("delta", kernel=k.delta_lagged, plain_kernel=k.delta, params=(WINDOW, LAG),
         lookback=_window, output="value", doc=_doc(
    "Change of the reading over the window: its last reading minus its first.",
    "    x[last] - x[first], first and last the earliest and the latest non-null readings of\n"
    "    the window. With lag 0 (the default) last is the row itself: x[i] - x[first], first\n"
    "    the earliest non-null reading with ts >= t - W (it may be the row itself, giving 0),\n"
    "    null at a null row. E.g. weight gain over 3 days. With a lag it is the change between\n"
    "    the first and the last reading of [t - lag - W, t - lag] (0 when it holds one reading),\n"
    "    e.g. `{window: 3d, lag: 1d}` is the gain of the 3 days that ended a day ago; null when\n"
    "    that window holds no reading, and a null row gets it like any row.",
    "a delta compares two single readings, so scale noise counts twice (clothing, time of day).\n"
    "    Rules of thumb on weight deltas (+2.3 kg in 3 days) had ~58 % false alerts in TEN-HMS;\n"
    "    `macd` of daily weight was more specific. Weigh at the same time of day.",
    "Zhang et al., Eur J Heart Fail 2009 (TEN-HMS); Gyllensten et al., JMIR Med Inform 2016."))

register("pct_change", kernel=k.pct_change_lagged, plain_kernel=k.pct_change,
         params=(WINDOW, LAG), lookback=_window, output="percent",
         doc=_doc("The same change as `delta`, in percent of the first reading in the window.",
                  "    100 * (x[last] - x[first]) / x[first], first and last as in `delta` (with\n"
                  "    lag 0, last is the row: null at a null row); null when x[first] is 0.",
                  "percentages of small readings swing widely; prefer `delta` near zero."))

register("slope", kernel=k.slope_lagged, plain_kernel=k.slope, params=(WINDOW, LAG),
         lookback=_window, output="value_per_hour",
         doc=_doc("Least-squares slope of the readings against time over the window, per hour.",
                  "    cov(t, x) / var(t) with t in hours over the readings of the window (with a\n"
                  "    lag, the trend of [t - lag - W, t - lag]); null with fewer than 2 distinct\n"
                  "    times. Multiply by 24 for a daily trend.",
                  "a slope over two readings is a delta divided by their gap: require a `count`."))

register("since_last", kernel=k.since_last, params=(), lookback=_all_history, output="minutes",
         doc="""Minutes since the previous non-null reading of the series (a gap length).

    At row i: (ts[i] - ts[j]) / 60 s, j the latest non-null row before i (a tie gives 0). Null at
    the first reading of the series. Needs all of the series' history (lookback ALL_HISTORY): the
    previous reading may be arbitrarily old.

    False alarms: a reading after a long gap is the end of a silence, not a silence; to alert while
    a device is silent, use `engine.detectors.silence_at` at evaluation times.""")

register("previous", kernel=k.previous, params=(GAP,), lookback=_all_history, output="value",
         doc="""Value of the previous reading of the series (metric's unit), e.g. the last answer.

    At row i with time t: x[j], j the latest row before i (in row order) with a non-null reading
    and ts[j] <= t - gap. With gap 0m (the default) any earlier row counts, an earlier row tied
    with t included; with a gap the previous reading must be at least that old (both ends
    included: a reading exactly gap before t counts), e.g. `gap: 60d` skips a screening
    repeated a few days later. Null when there is none (the first reading of the series). The
    row's own reading is never used, so a null row gets the same: the previous reading relative
    to its own time (at a missed screening recorded as null, the last answer before it), and an
    as-of join at that row reads what was known then. Needs all of the series' history
    (lookback ALL_HISTORY): the previous reading may be arbitrarily old.

    Use: a change since the previous screening. ICOPE step 1 (WHO ICOPE handbook 2019) is
    repeated every 4 months by the Toulouse ICOPE MONITOR, which alerts when a domain becomes
    positive since the previous step 1: `icope_cognition == 1 and cognition_before == 0` with
    `cognition_before: {metric: icope_cognition, fn: previous}`.

    Nulls and ties: a null reading is never a previous reading; a null row gets the previous
    reading relative to its own time, as above. Rows tied in ts are taken in row order.

    False alarms: previous compares with one reading, however old: pair it with `since_last`
    when a screening of years ago should not count. A borderline answer that flips between
    screenings alerts at every negative-to-positive flip; comparing with the best answer of a
    window (`min` over a year, as rules/icope.yaml does) is steadier.

    Reference: World Health Organization. Integrated care for older people (ICOPE): guidance for
    person-centred assessment and pathways in primary care. Geneva: WHO; 2019
    (WHO/FWC/ALC/19.1); Tavassoli N et al., Lancet Healthy Longev 2022;3(6):e394-e404 (ICOPE
    MONITOR: step 1 every 4 months, alert on a new positive domain or a worsening).""")

register("silence", kernel=k.silence, params=(LIMIT,), lookback=_all_history, output="flag",
         doc="""Flag (1.0 / 0.0): the gap since the previous non-null reading exceeds `limit`.

    1.0 when ts[i] - ts[j] > limit (strictly), j the latest non-null row before i; null at the first
    reading of the series. Evaluated at the series' own rows, so it marks the reading that ends a
    silence; a missed transmission with no row at all is found by `engine.detectors.silence_at`,
    which evaluates at any time.

    False alarms: devices that batch uploads show long gaps between uploads but not between
    readings; ts is the measurement time, so batching does not raise this flag.""")
