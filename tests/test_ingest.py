"""Ingest: readers, unit conversion, time zones and the reconciliation invariant."""
from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InputError
from engine.ingest import ingest, ingest_frame
from engine.schema import METRICS, TELEMETRY_SCHEMA

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)


def frame(**cols):
    n = len(next(iter(cols.values())))
    base = {"patient_id": ["P1"] * n, "ts": ["2026-01-05T08:00:00Z"] * n,
            "metric": ["weight"] * n, "value": ["80"] * n}
    base.update(cols)
    return pl.DataFrame(base)


@pytest.mark.parametrize("metric,value,unit,expected", [
    ("temp", "100.4", "[degF]", 38.0),
    ("temp", "98.6", "°F", 37.0),
    ("weight", "176.37", "lb", 80.0),
    ("weight", "80000", "g", 80.0),
    ("glucose", "5.5", "mmol/L", 99.088),
    ("spo2", "0.94", "1", 94.0),
    ("spo2", "94", "%", 94.0),
    ("sbp", "16", "kPa", 120.0),
    ("cpap_hours", "300", "min", 5.0),
    ("albumin", "3.5", "g/dL", 35.0),
])
def test_unit_conversion(metric, value, unit, expected):
    r = ingest_frame(frame(metric=[metric], value=[value], unit=[unit]), now=NOW)
    assert r.clean["value"][0] == pytest.approx(expected, abs=0.01)
    assert r.clean["unit"][0] == METRICS[metric].unit


@pytest.mark.parametrize("code,metric", [("8867-4", "heart_rate"), ("59408-5", "spo2"),
                                         ("LOINC:29463-7", "weight"),
                                         ("http://loinc.org|8310-5", "temp")])
def test_loinc_codes(code, metric):
    value = {"heart_rate": "70", "spo2": "95", "weight": "80", "temp": "37"}[metric]
    r = ingest_frame(frame(metric=[code], value=[value]), now=NOW)
    assert r.clean["metric"].to_list() == [metric]


def test_limits_are_inclusive():
    m = METRICS["spo2"]
    r = ingest_frame(frame(metric=["spo2"] * 4, value=[str(m.low), str(m.high), "49.99", "100.01"],
                           ts=[f"2026-01-05T0{i}:00Z" for i in range(4)]), now=NOW)
    assert r.clean["value"].to_list() == [50.0, 100.0]
    assert r.report.by_reason == {"implausible_value": 2}


def test_naive_timestamps_with_zone_and_dst():
    raw = frame(ts=["2026-01-05 08:00:00", "2026-07-05 08:00", "2026-03-29 02:30:00",
                    "2026-10-25 02:30:00"], value=["80", "80.5", "81", "82"])
    r = ingest_frame(raw, tz="Europe/Paris", now=NOW)
    got = r.clean["ts"].to_list()
    assert got[0] == dt.datetime(2026, 1, 5, 7, tzinfo=dt.timezone.utc)     # CET, UTC+1
    assert got[1] == dt.datetime(2026, 7, 5, 6, tzinfo=dt.timezone.utc)     # CEST, UTC+2
    # the repeated autumn hour takes the earlier instant (CEST)
    assert got[2] == dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.timezone.utc)
    assert r.report.by_reason == {"nonexistent_local_time": 1}               # spring gap
    with pytest.raises(InputError, match="unknown time zone 'Mars/Olympus'"):
        ingest_frame(raw, tz="Mars/Olympus", now=NOW)


def test_aware_datetime_column_and_arrow_and_duckdb(tmp_path):
    ts = pl.Series([dt.datetime(2026, 1, 5, 9, 0)]).dt.replace_time_zone("Europe/Paris")
    raw = pl.DataFrame({"patient_id": ["P1"], "ts": ts, "metric": ["weight"], "value": [80.0]})
    r = ingest(raw.to_arrow(), now=NOW)
    assert r.clean["ts"][0] == dt.datetime(2026, 1, 5, 8, tzinfo=dt.timezone.utc)
    assert r.clean.schema == pl.Schema(TELEMETRY_SCHEMA)
    raw.write_ipc(tmp_path / "t.arrow")
    assert ingest(str(tmp_path / "t.arrow"), now=NOW).report.rows_used == 1
    db = tmp_path / "store.duckdb"
    con = duckdb.connect(str(db))
    con.sql("create schema tm; create table tm.obs as select 'P7' as patient_id, "
            "timestamptz '2026-01-05 08:00:00+00' as ts, '8867-4' as metric, 64 as value")
    con.close()
    r = ingest(f"{db}:tm.obs", now=NOW)
    assert r.clean.select("patient_id", "metric", "value").row(0) == ("P7", "heart_rate", 64.0)


def test_pandas_and_integer_ids():
    pdf = pl.DataFrame({"patient_id": [7, 7], "ts": ["2026-01-05T08:00Z", "2026-01-05T09:00Z"],
                        "metric": ["glucose"] * 2, "value": [110, 120]}).to_pandas()
    r = ingest(pdf, now=NOW)
    assert r.clean["patient_id"].to_list() == ["7", "7"]


def test_output_sorted_and_unique():
    raw = frame(patient_id=["B", "A", "A", "A"],
                ts=["2026-01-05T08:00Z", "2026-01-06T08:00Z", "2026-01-05T08:00Z",
                    "2026-01-05T08:00Z"], value=["80", "81", "79", "79"])
    r = ingest_frame(raw, now=NOW)
    assert r.clean["patient_id"].to_list() == ["A", "A", "B"]
    assert r.clean["value"].to_list() == [79.0, 81.0, 80.0]
    assert r.report.duplicates_collapsed == 1


# ---- the reconciliation invariant on random dirty input ------------------------------------

_ts = st.one_of(
    st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2027, 12, 31))
    .map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 6, 1))
    .map(lambda d: d.strftime("%Y-%m-%d %H:%M")),
    st.sampled_from(["", "NA", "yesterday", "2026-02-30T10:00Z", "2026-01-05T08:00:00+0100"]),
    st.none(),
)
_metric = st.sampled_from([*METRICS, "8867-4", "29463-7", "bogus", "", None])
_value = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.floats(min_value=0, max_value=300).map(lambda v: f"{v:.1f}"),
                   st.sampled_from(["", "NA", "abc", "36,6", "1e400", "-0"]), st.none())
_unit = st.sampled_from([None, "", "kg", "lb", "%", "1", "mmol/L", "[degF]", "furlong"])
_row = st.tuples(st.sampled_from(["P1", "P2", "P3", "", None]), _ts, _metric, _value, _unit)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_row, min_size=1, max_size=40), dup=st.integers(0, 5),
       tz=st.sampled_from([None, "Europe/Paris"]))
def test_rows_always_reconcile(rows, dup, tz):
    rows = rows + rows[:dup]  # force some exact duplicates
    raw = pl.DataFrame(rows, schema={"patient_id": pl.String, "ts": pl.String,
                                     "metric": pl.String, "value": pl.String, "unit": pl.String},
                       orient="row")
    r = ingest_frame(raw, tz=tz, now=NOW)
    rep = r.report
    assert rep.rows_in == len(rows)
    assert rep.rows_in == rep.rows_used + rep.rows_quarantined + rep.duplicates_collapsed
    assert r.clean.height == rep.rows_used and r.quarantine.height == rep.rows_quarantined
    assert r.quarantine["row"].is_unique().all()
    # clean rows: contract types, inside limits, unique keys, sorted
    assert r.clean.schema == pl.Schema(TELEMETRY_SCHEMA)
    assert not r.clean.select(pl.struct("patient_id", "metric", "ts").is_duplicated().any()).item()
    assert r.clean.equals(r.clean.sort("patient_id", "metric", "ts"))
    for metric, lo, hi in r.clean.group_by("metric").agg(
            pl.col("value").min(), pl.col("value").max().alias("hi")).rows():
        assert METRICS[metric].low <= lo and hi <= METRICS[metric].high


@settings(max_examples=60, deadline=None)
@given(raw=__import__("engine.testing", fromlist=["x"]).telemetry_frames())
def test_public_strategy_reconciles(raw):
    rep = ingest_frame(raw, now=NOW).report
    assert rep.balanced and rep.rows_in == raw.height


def test_assert_alerts_equal_reports_differences():
    from engine.testing import assert_alerts_equal

    t = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
    a = pl.DataFrame({"patient_id": ["A", "B"], "rule_id": ["r", "r"], "severity": ["high"] * 2,
                      "opened_at": [t, t], "resolved_at": [None, None]},
                     schema_overrides={"resolved_at": pl.Datetime("us", "UTC")})
    assert_alerts_equal(a, a.reverse())
    with pytest.raises(AssertionError, match="only left: patient_id=B"):
        assert_alerts_equal(a, a.head(1))
    with pytest.raises(AssertionError, match="different order"):
        assert_alerts_equal(a, a.reverse(), check_order=True)
