"""engine.ingest (codes and numba kernels) equals its plain polars reference (tests/naive_ingest.py)
on random dirty input: the same clean rows, the same quarantine (rows, reasons, details), the same
row accounting — with text and typed columns, shuffled and grouped rows, stray spaces in ids,
integer ids, time zones, patients tables and duplicates."""
from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from engine.ingest import ingest_frame
from engine.schema import METRICS
from tests import naive_ingest as ref

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)
UTC = dt.timezone.utc

_pid = st.sampled_from(["P1", "P2", "P3", " P1", "P2 ", "", None, "P10", "p1"])
_ts_text = st.one_of(
    st.datetimes(min_value=dt.datetime(1969, 12, 1), max_value=dt.datetime(2027, 12, 31))
    .map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 6, 1))
    .map(lambda d: d.strftime("%Y-%m-%d %H:%M")),
    st.sampled_from(["", "NA", "yesterday", "2026-02-30T10:00Z", "2026-01-05T08:00:00+0100",
                     "2026-03-29 02:30", "2026-10-25 02:30:00", " 2026-01-05T08:00Z ",
                     "1970-01-01T00:03:00Z", "2099-01-01T00:00Z"]),
    st.none())
_ts_typed = st.one_of(
    st.datetimes(min_value=dt.datetime(1969, 12, 1), max_value=dt.datetime(2027, 12, 31),
                 timezones=st.just(UTC)), st.none())
_metric = st.sampled_from([*METRICS, "8867-4", "LOINC:29463-7", " weight", "bogus", "", None])
_value_text = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.floats(min_value=0, max_value=300).map(lambda v: f"{v:.2f}"),
                        st.sampled_from(["", "NA", "abc", "36,6", "1e400", "-0", " 81.2 ",
                                         "81.204", "81.196"]), st.none())
_value_num = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.floats(min_value=0, max_value=300).map(lambda v: round(v, 1)),
                       st.sampled_from([81.2, 81.204, 81.196, 0.94, -0.0]), st.none())
_unit = st.sampled_from([None, "", "kg", "lb", "%", "1", "mmol/L", "[degF]", "furlong", " kg"])


@st.composite
def frames(draw):
    typed_ts = draw(st.booleans())
    typed_value = draw(st.booleans())
    n = draw(st.integers(1, 40))
    rows = [(draw(_pid), draw(_ts_typed if typed_ts else _ts_text), draw(_metric),
             draw(_value_num if typed_value else _value_text), draw(_unit)) for _ in range(n)]
    rows += draw(st.lists(st.sampled_from(rows), max_size=4))      # exact duplicates
    if draw(st.booleans()):
        rows.sort(key=lambda r: (str(r[0]), str(r[2]), str(r[1])))  # grouped, as most exports
    schema = {"patient_id": pl.String, "ts": pl.Datetime("us", "UTC") if typed_ts else pl.String,
              "metric": pl.String, "value": pl.Float64 if typed_value else pl.String,
              "unit": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def assert_same(raw, **kw):
    got, want = ingest_frame(raw, now=NOW, **kw), ref.ingest_frame(raw, now=NOW, **kw)
    assert_frame_equal(got.clean, want.clean)
    assert_frame_equal(got.quarantine, want.quarantine)
    assert got.report.as_dict() == {**want.report.as_dict(), "rows_after_as_of": 0}
    return got


@settings(max_examples=300, deadline=None)
@given(raw=frames(), tz=st.sampled_from([None, "Europe/Paris", "America/New_York"]))
def test_equals_reference(raw, tz):
    assert_same(raw, tz=tz)


@settings(max_examples=100, deadline=None)
@given(raw=frames(), known=st.lists(st.sampled_from(["P1", "P2", "P3", "P10"]), unique=True))
def test_equals_reference_with_patients_table(raw, known):
    assert_same(raw, patients=pl.DataFrame({"patient_id": known}, schema={"patient_id":
                                                                             pl.String}))


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(0, 30), min_size=1, max_size=30))
def test_integer_ids_equal_reference(ids):
    raw = pl.DataFrame({"patient_id": ids,
                        "ts": [f"2026-01-{1 + i % 28:02d}T08:00Z" for i in range(len(ids))],
                        "metric": ["weight"] * len(ids), "value": [80.0] * len(ids)})
    assert_same(raw)


def test_index_matches_clean():
    raw = pl.DataFrame({"patient_id": ["B", "A", "A", "B", "C"],
                        "ts": ["2026-01-05T08:00Z"] * 5,
                        "metric": ["weight", "spo2", "weight", "weight", "temp"],
                        "value": ["80", "95", "81", "80", "37"]})
    r = ingest_frame(raw, now=NOW)
    ix = r.index
    assert ix.patient_ids.to_list() == ["A", "B", "C"]
    assert ix.offsets.tolist() == [0, 1, 2, 3, 4]
    assert ix.patient.tolist() == [0, 0, 1, 2]
    assert [sorted(METRICS)[m] for m in ix.metric] == ["spo2", "weight", "weight", "temp"]
