"""Window-statistic detectors: their registry entries and documentation.

The kernels live in :mod:`engine.detectors.kernels_window`; this module declares each one as a
detector a spec can name (``{metric: weight, fn: delta, window: 3d}``), with the semantics a
clinician or a rule author needs.
"""
from __future__ import annotations

from . import kernels_window as k
from .registry import ALL_HISTORY, DURATION, Param, register

WINDOW = Param("window", DURATION, doc="length W of the trailing window, e.g. '6h' or '3d'")
LIMIT = Param("limit", DURATION, doc="longest gap between readings that is not a silence")


def _window(params: dict) -> int:
    return params["window"]


def _all_history(params: dict) -> int:
    return ALL_HISTORY


SEMANTICS = """
    Window: at a row with time t the window holds the readings of the same series with
    t - W <= ts <= t, both ends included. Readings tied with t are included only when they come
    before the row (row order breaks ties), so a row's output never depends on later rows.
    Nulls: null readings never enter a window; a null row still gets the statistic of the
    non-null readings in its window. Output is null where the window holds too few readings."""


def _doc(head: str, body: str, guidance: str, ref: str = "") -> str:
    doc = f"{head}\n{body}\n{SEMANTICS}\n\n    False alarms: {guidance}"
    return doc + (f"\n\n    Reference: {ref}" if ref else "")


register("mean", kernel=k.rolling_mean, params=(WINDOW,), lookback=_window, output="value",
         doc=_doc(
    "Mean of the readings in the trailing window (metric's unit).",
    "    mean = sum(x) / n over the n non-null readings; null when n = 0. Computed with a\n"
    "    compensated running sum, exact to a few ulps whatever the magnitudes.",
    "a mean over a window that holds one reading is that reading; pair it with `count` when\n"
    "    a rule should need several readings."))

register("sum", kernel=k.rolling_sum, params=(WINDOW,), lookback=_window, output="value", doc=_doc(
    "Sum of the readings in the trailing window (metric's unit), e.g. steps over 7d.",
    "    Null (not 0) when the window holds no reading: no data is not zero activity.",
    "a missing day lowers a sum; compare with `count` or use `mean` when readings may be missed."))

register("count", kernel=k.rolling_count, params=(WINDOW,), lookback=_window, output="count",
         doc=_doc("Number of non-null readings in the trailing window (0 when empty, never null).",
                  "    Useful to require enough data before trusting another detector, or to\n"
                  "    count events (falls) over a period.",
                  "duplicates removed at ingest cannot inflate a count."))

register("std", kernel=k.rolling_std, params=(WINDOW,), lookback=_window, output="value", doc=_doc(
    "Sample standard deviation (ddof = 1) of the readings in the trailing window.",
    "    sqrt(sum((x - mean)^2) / (n - 1)); null with fewer than 2 readings, 0 for a constant\n"
    "    window. Running sums are shifted by a value inside the window and re-centred exactly\n"
    "    when the mean drifts away from it, so values from 1e-3 to 1e6 keep ~1e-12 relative error.",
    "with few readings the sample std is itself very noisy (n = 2 gives one degree of freedom);\n"
    "    require a minimum `count` in rules built on it.",
    "Welford (1962); Chan, Golub & LeVeque, 'Algorithms for computing the sample variance'\n"
    "    (1983)."))

register("min", kernel=k.rolling_min, params=(WINDOW,), lookback=_window, output="value", doc=_doc(
    "Smallest reading in the trailing window (metric's unit).",
    "    Monotonic deque: O(n) for the whole series whatever the window.",
    "a single artefactual low reading (a slipped SpO2 probe) sets the min for a whole window;\n"
    "    prefer `median` or a `for:` duration for noisy sensors.",
    "Lemire, 'Streaming maximum-minimum filter using no more than three comparisons per element'"
    " (2006)."))

register("max", kernel=k.rolling_max, params=(WINDOW,), lookback=_window, output="value", doc=_doc(
    "Largest reading in the trailing window (metric's unit).",
    "    Monotonic deque: O(n) for the whole series whatever the window.",
    "one artefactual high reading sets the max for a whole window; see `min`.",
    "Lemire (2006)."))

register("median", kernel=k.rolling_median, params=(WINDOW,), lookback=_window, output="value",
         doc=_doc("Median of the readings in the trailing window (metric's unit).",
                  "    Middle reading, or the mean of the two middle readings when n is even.\n"
                  "    A sorted buffer with binary-search insertion and removal.",
                  "robust to a single artefact, so the detector of choice for noisy home sensors;\n"
                  "    it lags a genuine step change by half the window."))

register("delta", kernel=k.delta, params=(WINDOW,), lookback=_window, output="value", doc=_doc(
    "Change of the reading over the window: value now minus the first reading in the window.",
    "    x[i] - x[first], where first is the earliest non-null reading with ts >= t - W (it may\n"
    "    be the row itself, giving 0). Null at a null row. E.g. weight gain over 3 days.",
    "a delta compares two single readings, so scale noise counts twice (clothing, time of day).\n"
    "    Rules of thumb on weight deltas (+2.3 kg in 3 days) had ~58 % false alerts in TEN-HMS;\n"
    "    `macd` of daily weight was more specific. Weigh at the same time of day.",
    "Zhang et al., Eur J Heart Fail 2009 (TEN-HMS); Gyllensten et al., JMIR Med Inform 2016."))

register("pct_change", kernel=k.pct_change, params=(WINDOW,), lookback=_window, output="percent",
         doc=_doc("The same change as `delta`, in percent of the first reading in the window.",
                  "    100 * (x[i] - x[first]) / x[first]; null when x[first] is 0 or at a null"
                  " row.",
                  "percentages of small readings swing widely; prefer `delta` near zero."))

register("slope", kernel=k.slope, params=(WINDOW,), lookback=_window, output="value_per_hour",
         doc=_doc("Least-squares slope of the readings against time over the window, per hour.",
                  "    cov(t, x) / var(t) with t in hours; null with fewer than 2 distinct times.\n"
                  "    Multiply by 24 for a daily trend.",
                  "a slope over two readings is a delta divided by their gap: require a `count`."))

register("since_last", kernel=k.since_last, params=(), lookback=_all_history, output="minutes",
         doc="""Minutes since the previous non-null reading of the series (a gap length).

    At row i: (ts[i] - ts[j]) / 60 s, j the latest non-null row before i (a tie gives 0). Null at
    the first reading of the series. Needs all of the series' history (lookback ALL_HISTORY): the
    previous reading may be arbitrarily old.

    False alarms: a reading after a long gap is the end of a silence, not a silence; to alert while
    a device is silent, use `engine.detectors.silence_at` at evaluation times.""")

register("silence", kernel=k.silence, params=(LIMIT,), lookback=_all_history, output="flag",
         doc="""Flag (1.0 / 0.0): the gap since the previous non-null reading exceeds `limit`.

    1.0 when ts[i] - ts[j] > limit (strictly), j the latest non-null row before i; null at the first
    reading of the series. Evaluated at the series' own rows, so it marks the reading that ends a
    silence; a missed transmission with no row at all is found by `engine.detectors.silence_at`,
    which evaluates at any time.

    False alarms: devices that batch uploads show long gaps between uploads but not between
    readings; ts is the measurement time, so batching does not raise this flag.""")
