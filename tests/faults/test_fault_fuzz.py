"""Hostile input, fuzzed for a bounded time: random bytes as telemetry files, random typed
frames, random command-line values. Nothing may raise anything but veille's documented errors
(or, from the command line, exit 0 or 2 with a message), and the row accounting reconciles."""
from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from engine.errors import VeilleError
from engine.ingest import ingest

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(blob=st.binary(max_size=3000), ext=st.sampled_from([".csv", ".tsv", ".parquet",
                                                          ".arrow"]),
       head=st.sampled_from([b"", b"patient_id,ts,metric,value\n", b"PAR1"]))
def test_random_bytes_as_a_telemetry_file(tmp_path, blob, ext, head):
    path = tmp_path / f"t{ext}"
    path.write_bytes(head + blob)
    try:
        res = ingest(str(path), now=NOW)
    except VeilleError as exc:
        assert str(path.name) in str(exc)
        return
    assert res.report.balanced


CELLS = st.one_of(st.none(), st.text(max_size=12), st.floats(allow_nan=True),
                  st.integers(-2**40, 2**40), st.booleans())
COLUMN = st.sampled_from(["patient_id", "ts", "metric", "value", "unit", "other"])


@SETTINGS
@given(st.data())
def test_random_frames(data):
    n = data.draw(st.integers(0, 8))
    names = data.draw(st.lists(COLUMN, min_size=1, max_size=5, unique=True))
    cols = {}
    for name in names:
        kind = data.draw(st.sampled_from(["str", "float", "int", "bool", "datetime", "mixed"]))
        if kind == "str":
            vals = data.draw(st.lists(st.one_of(st.none(), st.text(max_size=25),
                                                st.sampled_from(["weight", "spo2", "kg", "%",
                                                                 "2026-01-05T08:00Z", "81.5"])),
                                      min_size=n, max_size=n))
            cols[name] = pl.Series(name, vals, pl.String)
        elif kind == "float":
            cols[name] = pl.Series(name, data.draw(st.lists(st.one_of(st.none(), st.floats()),
                                                            min_size=n, max_size=n)), pl.Float64)
        elif kind == "int":
            cols[name] = pl.Series(name, data.draw(st.lists(st.integers(-2**62, 2**62),
                                                            min_size=n, max_size=n)), pl.Int64)
        elif kind == "bool":
            cols[name] = pl.Series(name, data.draw(st.lists(st.booleans(), min_size=n,
                                                            max_size=n)), pl.Boolean)
        elif kind == "datetime":
            cols[name] = pl.Series(name, data.draw(st.lists(st.datetimes(
                timezones=st.just(dt.timezone.utc)), min_size=n, max_size=n)))
        else:
            cols[name] = pl.Series(name, [str(v) for v in data.draw(
                st.lists(CELLS, min_size=n, max_size=n))], pl.String)
    frame = pl.DataFrame(list(cols.values())) if cols else pl.DataFrame()
    try:
        res = ingest(frame, now=NOW)
    except VeilleError:
        return
    assert res.report.balanced
    assert res.report.rows_in == frame.height


OPTIONS = st.sampled_from(["--as-of", "--tz", "--metric", "--unit", "--top", "--lang",
                           "--columns", "--programme", "--silences", "--flap",
                           "--working-hours"])
VALUES = st.one_of(st.text(max_size=20), st.sampled_from(
    ["2026-01-05", "9999-12-31T00:00Z", "0001-01-01", "Europe/Paris", "Mars/Olympus", "-1",
     "weight", "mg/dL", "fr", "xx", "a=b", "=", "3/72h", "0/0h", "25:00-26:00", "[/x]",
     "\x1b[31m"]))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(st.tuples(OPTIONS, VALUES), max_size=3))
def test_random_command_line_values(tmp_path, args):
    tel = tmp_path / "t.csv"
    if not tel.exists():
        tel.write_text("patient_id,ts,metric,value\nP1,2026-01-05T08:00Z,spo2,95\n"
                       "P1,2026-01-05T09:00Z,spo2,91\n")
    flat = [x for pair in args for x in pair]
    r = CliRunner().invoke(app, ["score", str(tel), "--programme", "copd", "--model", "none",
                                 "--out", str(tmp_path / "q.parquet"), *flat])
    assert r.exit_code in (0, 2), (flat, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), (flat, r.exception)
    assert "Traceback" not in r.output
