"""Testing helpers for users of veille, as polars ships ``assert_frame_equal``.

* :func:`assert_alerts_equal` compares two alert queues or episode frames on what matters
  (patient, rule, severity, times) with a readable diff;
* :func:`telemetry_frames` is a hypothesis strategy of raw, dirty long-format telemetry
  (irregular times, gaps, nulls, duplicates, unit mix-ups) for property tests of code that
  consumes veille's input. Hypothesis is imported only when the strategy is used.
"""
from __future__ import annotations

import datetime as dt

import polars as pl

KEY = ("patient_id", "rule_id", "opened_at")


def assert_alerts_equal(left: pl.DataFrame, right: pl.DataFrame, *,
                        columns: tuple[str, ...] = ("patient_id", "rule_id", "severity",
                                                    "opened_at", "resolved_at"),
                        check_order: bool = False) -> None:
    """Raise ``AssertionError`` listing alerts only in ``left``, only in ``right``, or changed."""
    missing = [c for c in columns if c not in left.columns or c not in right.columns]
    if missing:
        raise AssertionError(f"both frames need the columns {', '.join(missing)}")
    a, b = left.select(columns), right.select(columns)
    if not check_order:
        a, b = a.sort(columns, nulls_last=True), b.sort(columns, nulls_last=True)
    if a.equals(b):
        return
    only_l = a.join(b, on=list(columns), how="anti", nulls_equal=True)
    only_r = b.join(a, on=list(columns), how="anti", nulls_equal=True)
    lines = [f"alerts differ: {a.height} on the left, {b.height} on the right"]
    for label, frame in (("only left", only_l), ("only right", only_r)):
        for row in frame.head(20).iter_rows(named=True):
            lines.append(f"  {label}: " + ", ".join(f"{k}={v}" for k, v in row.items()))
    if not only_l.height and not only_r.height:
        lines.append("  same alerts in a different order")
    raise AssertionError("\n".join(lines))


def telemetry_frames(*, patients: int = 3, max_rows: int = 60, dirty: bool = True,
                     start: dt.datetime = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)):
    """Hypothesis strategy of long-format telemetry frames (text columns, as read from CSV)."""
    from hypothesis import strategies as st

    from .schema import METRICS

    metric = st.sampled_from(["weight", "spo2", "heart_rate", "resp_rate", "temp", "glucose"])

    def value_for(m):
        spec = METRICS[m]
        good = st.floats(spec.low, spec.high).map(lambda v: f"{v:.1f}")
        if not dirty:
            return good
        bad = st.sampled_from(["", "NA", "nan", "inf", "-1", "1e9", "x"])
        return st.one_of(good, good, good, bad)

    @st.composite
    def rows(draw):
        n = draw(st.integers(1, max_rows))
        out = []
        for _ in range(n):
            m = draw(metric)
            minutes = draw(st.integers(0, 60 * 24 * 14))
            ts = (start + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
            if dirty and draw(st.integers(0, 20)) == 0:
                ts = draw(st.sampled_from(["", "not a time", ts[:-1]]))
            pid = f"P{draw(st.integers(1, patients)):03d}"
            out.append((pid, ts, m, draw(value_for(m))))
        if dirty and out:
            out += draw(st.lists(st.sampled_from(out), max_size=3))  # exact duplicates
        return pl.DataFrame(out, schema={"patient_id": pl.String, "ts": pl.String,
                                         "metric": pl.String, "value": pl.String}, orient="row")

    return rows()
