"""Hostile CSV telemetry: one bad line (not UTF-8, ragged) is quarantined with its row number
and why — never its content — while the other rows are used; a header naming a column twice is
refused."""
from __future__ import annotations

import datetime as dt

import pytest

from engine.errors import InputError
from engine.ingest import ingest

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
HEAD = b"patient_id,ts,metric,value\n"
GOOD = [b"P1,2026-01-05T08:00Z,weight,81.5\n", b"P1,2026-01-06T08:00Z,weight,81.9\n",
        b"P2,2026-01-05T09:00Z,spo2,95\n", b"P2,2026-01-06T09:00Z,spo2,abc\n"]


def _write(tmp_path, lines) -> str:
    path = tmp_path / "t.csv"
    path.write_bytes(HEAD + b"".join(lines))
    return str(path)


def test_a_latin1_line_and_a_ragged_line_are_quarantined_alone(tmp_path):
    lines = [GOOD[0], "P\xe9pin,2026-01-05T08:00Z,weight,80\n".encode("latin-1"), GOOD[1],
             b"P3,2026-01-05T08:00Z,weight\n", GOOD[2], GOOD[3]]
    res = ingest(_write(tmp_path, lines), now=NOW)
    rep = res.report
    assert rep.rows_in == 6 and rep.rows_used == 3 and rep.rows_quarantined == 3
    assert rep.balanced
    q = res.quarantine.sort("row")
    assert q["row"].to_list() == [2, 4, 6]          # data rows as in the file
    assert q["reason"].to_list() == ["malformed_row", "malformed_row", "unparseable_value"]
    assert "not UTF-8" in q["detail"][0] and "3 fields, the header has 4" in q["detail"][1]
    # the content of a malformed line is never echoed
    assert not any("P\ufffdpin" in (d or "") or "Pépin" in (d or "") for d in q["detail"])
    assert q["patient_id"][0] is None and q["patient_id"][1] is None
    assert res.clean["patient_id"].to_list() == ["P1", "P1", "P2"]


def test_a_carriage_return_inside_a_line_is_quarantined_alone(tmp_path):
    # found by the atheris fuzz (tests/faults/atheris_fuzz.py): the line reader raised
    # csv.Error, a traceback; the unterminated quote sends the file to the line reader
    lines = [GOOD[0], b"P1,2026-01-05\r09:00Z,weight,80\n", GOOD[1], b'P2,x,spo2,"9\n']
    res = ingest(_write(tmp_path, lines), now=NOW)
    assert res.report.balanced and res.report.rows_used == 2
    q = res.quarantine.sort("row")
    assert q["row"].to_list() == [2, 4]
    assert q["reason"].to_list() == ["malformed_row", "unparseable_timestamp"]
    assert "line break inside a field" in q["detail"][0]


def test_a_carriage_return_inside_the_header_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"patient_id,ts,metric,\rvalue\n" + GOOD[0])
    with pytest.raises(InputError, match="header line has a line break inside a field"):
        ingest(str(path), now=NOW)


def test_a_clean_csv_is_read_as_before(tmp_path):
    res = ingest(_write(tmp_path, GOOD), now=NOW)
    assert res.report.rows_in == 4 and res.report.rows_used == 3
    assert res.quarantine["row"].to_list() == [4]


def test_a_duplicated_header_column_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"patient_id,ts,metric,value,value\nP1,2026-01-05T08:00Z,weight,81,82\n")
    with pytest.raises(InputError, match="names column 'value' twice"):
        ingest(str(path), now=NOW)


def test_a_header_that_is_not_utf8_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("patient_id,ts,métrique,value\n".encode("latin-1") + GOOD[0])
    with pytest.raises(InputError, match="not UTF-8"):
        ingest(str(path), now=NOW)
