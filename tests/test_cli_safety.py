"""A newcomer's first hour and the holes found from outside, driven as a user would (CliRunner):
each case exits with one clear message and writes nothing, or runs and says what it did."""
from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
NOW = dt.datetime.now(dt.timezone.utc)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line(r) -> str:
    return r.output.replace("\n", " ")


def csv(path, rows, header="patient_id,ts,metric,value"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def weights(pid="P1", days=3, day=dt.date(2026, 1, 5)):
    """Daily weights at 08:00 Paris time from ``day``."""
    return [(pid, f"{day + dt.timedelta(days=d)}T08:00:00+01:00", "weight", 80 + d)
            for d in range(days)]


def assert_refused(r, *phrases, folder=None, keep=()):
    assert r.exit_code == 2, r.output
    text = one_line(r)
    for p in phrases:
        assert p in text, (p, text)
    assert "Traceback" not in text
    if folder is not None:
        assert sorted(p.name for p in folder.iterdir()) == sorted(keep)


# -- a newcomer's first hour ------------------------------------------------------------------

def test_naive_times_without_a_zone_are_refused_with_the_fix(tmp_path):
    src = csv(tmp_path / "t.csv", [("P1", "2026-01-05 08:00", "weight", 80),
                                   ("P1", "2026-01-06 08:00", "weight", 81)])
    r = invoke("score", src, "--out", tmp_path / "q.parquet")
    assert_refused(r, "no usable row", "naive_timestamp 2", "--tz Europe/Paris",
                   folder=tmp_path, keep=["t.csv"])
    ok = invoke("score", src, "--tz", "Europe/Paris", "--out", tmp_path / "q.parquet")
    assert ok.exit_code == 0, ok.output


def test_a_missing_column_points_at_columns(tmp_path):
    src = csv(tmp_path / "t.csv", [("P1", "2026-01-05T08:00Z", 80)],
              header="subject,time,glucose")
    r = invoke("score", src, "--out", tmp_path / "q.parquet")
    assert_refused(r, "missing the required column(s) patient_id, ts, metric, value",
                   "found: subject, time, glucose", "--columns", "--metric")


def test_backtest_refuses_unknown_event_types_and_reads_other_files(tmp_path):
    from engine.synth import write_cohort

    write_cohort(tmp_path / "c", patients=30, days=10, seed=3)
    ev = pl.read_parquet(tmp_path / "c" / "events.parquet")
    ev.with_columns(pl.lit("covid_hospitalisation").alias("event_type")) \
        .write_parquet(tmp_path / "events.parquet")
    r = invoke("backtest", tmp_path / "c", "--events", tmp_path / "events.parquet")
    assert_refused(r, "'covid_hospitalisation'", f"({ev.height} events)", "not known",
                   "--skip-unknown-events")
    r = invoke("backtest", tmp_path / "c", "--events", tmp_path / "events.parquet",
               "--skip-unknown-events", "--markdown")
    assert r.exit_code == 0, r.output
    assert f"left out: covid_hospitalisation ({ev.height} events)" in one_line(r)
    # events as text with naive local times, read in the zone given
    ev.with_columns(pl.col("onset", "event_time").dt.convert_time_zone("Europe/Paris")
                    .dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(tmp_path / "events.csv")
    r = invoke("backtest", tmp_path / "c", "--events", tmp_path / "events.csv", "--markdown")
    assert_refused(r, "no time zone: give --tz")
    r = invoke("backtest", tmp_path / "c", "--events", tmp_path / "events.csv", "--markdown",
               "--tz", "Europe/Paris")
    assert r.exit_code == 0, r.output
    want = invoke("backtest", tmp_path / "c", "--markdown")
    assert one_line(r) == one_line(want)


# -- patients the patients table does not list ------------------------------------------------

def test_ids_match_across_spaces_and_integer_ids(tmp_path):
    src = csv(tmp_path / "t.csv", weights("7") + weights("P2"))
    pats = tmp_path / "p.csv"
    pats.write_text("patient_id,programme\n7,heart_failure\n\"P2 \",heart_failure\n")
    r = invoke("score", src, "--patients", pats, "--out", tmp_path / "q.parquet")
    assert r.exit_code == 0, r.output
    assert "quarantined 0" in one_line(r) and "unknown" not in one_line(r)


def test_patients_missing_from_the_table_are_quarantined_and_named(tmp_path):
    src = csv(tmp_path / "t.csv", weights("P1") + weights("P9"))
    pats = tmp_path / "p.csv"
    pats.write_text("patient_id,programme\nP1,heart_failure\n")
    r = invoke("score", src, "--patients", pats, "--out", tmp_path / "q.parquet")
    assert r.exit_code == 0, r.output
    text = one_line(r)
    assert "unknown_patient 3" in text
    assert "1 telemetry patients are not in the patients table" in text and "P9" in text
    q = pl.read_parquet(tmp_path / "q.quarantine.parquet")
    assert q["patient_id"].unique().to_list() == ["P9"]
    assert q["detail"][0] == "patient 'P9' has no row in the patients table"


def test_a_patients_table_matching_nobody_is_refused(tmp_path):
    src = csv(tmp_path / "t.csv", weights("00123"))
    pats = tmp_path / "p.csv"
    pats.write_text("patient_id,programme\n123,heart_failure\n")
    r = invoke("score", src, "--patients", pats, "--out", tmp_path / "q.parquet")
    assert_refused(r, "no usable row", "unknown_patient 3", "same pseudonymous ids",
                   folder=tmp_path, keep=["p.csv", "t.csv"])


# -- times out of any plausible range -------------------------------------------------------

def test_clock_resets_and_year_one_are_quarantined(tmp_path):
    src = csv(tmp_path / "t.csv", weights() + [("P1", "0001-01-01T00:00:00Z", "weight", 80),
                                               ("P1", "1970-01-01T00:02:00Z", "weight", 80)])
    r = invoke("score", src, "--out", tmp_path / "q.parquet")
    assert r.exit_code == 0, r.output
    assert "timestamp_too_early 2" in one_line(r)


def test_as_of_far_beyond_the_data_or_in_the_future_is_refused(tmp_path):
    src = csv(tmp_path / "t.csv", weights())
    r = invoke("score", src, "--out", tmp_path / "q.parquet", "--as-of", "9999-01-01T00:00Z")
    assert_refused(r, "--as-of 9999-01-01T00:00:00+00:00 is in the future", folder=tmp_path,
                   keep=["t.csv"])
    r = invoke("score", src, "--out", tmp_path / "q.parquet", "--as-of", "2025-01-01T00:00Z")
    assert_refused(r, "no usable row", "after --as-of", folder=tmp_path, keep=["t.csv"])
    r = invoke("score", src, "--out", tmp_path / "q.parquet", "--as-of", "2026-01-30T00:00Z")
    assert r.exit_code == 0, r.output
    old = csv(tmp_path / "old.csv", weights(day=dt.date(2024, 3, 1)))
    late = (NOW - dt.timedelta(days=1)).isoformat()
    r = invoke("score", old, "--out", tmp_path / "q.parquet", "--as-of", late)
    assert_refused(r, "more than 366 days after the latest reading")


def test_rows_after_as_of_are_counted_apart(tmp_path):
    src = csv(tmp_path / "t.csv", weights(days=5))
    r = invoke("score", src, "--out", tmp_path / "q.parquet", "--as-of",
               "2026-01-07T12:00+01:00")
    assert r.exit_code == 0, r.output
    assert "rows in 5 = used 3 + quarantined 0 + duplicates collapsed 0 + after --as-of 2" \
        in one_line(r)


def test_an_enrolment_before_2000_is_refused(tmp_path):
    src = csv(tmp_path / "t.csv", weights())
    pats = tmp_path / "p.csv"
    pats.write_text("patient_id,programme,enrolled_at\nP1,heart_failure,1900-01-01T00:00Z\n")
    r = invoke("score", src, "--patients", pats, "--out", tmp_path / "q.parquet")
    assert_refused(r, "row 1, column 'enrolled_at'", "before 2000-01-02")


# -- outputs ----------------------------------------------------------------------------------

def test_out_naming_an_input_is_refused_before_any_work(tmp_path):
    src = csv(tmp_path / "t.csv", weights())
    before = src.read_bytes()
    r = invoke("score", src, "--out", src)
    assert_refused(r, "is an input of this run")
    assert src.read_bytes() == before
    db = tmp_path / "in.duckdb"
    con = duckdb.connect(str(db))
    con.sql("create table t as select * from read_csv_auto('" + str(src) + "')")
    con.close()
    r = invoke("score", f"{db}:t", "--out", db)
    assert_refused(r, "is an input of this run")


def test_out_that_cannot_be_written_writes_nothing(tmp_path):
    src = csv(tmp_path / "t.csv", weights())
    (tmp_path / "dir.parquet").mkdir()
    r = invoke("score", src, "--out", tmp_path / "dir.parquet")
    assert_refused(r, "is a folder", folder=tmp_path, keep=["dir.parquet", "t.csv"])
    (tmp_path / "afile").write_text("x")
    r = invoke("score", src, "--out", tmp_path / "afile" / "q.parquet")
    assert_refused(r, "afile is a file", folder=tmp_path, keep=["afile", "dir.parquet", "t.csv"])
    (tmp_path / "q.quarantine.parquet").mkdir()       # the second file of the pair
    r = invoke("score", src, "--out", tmp_path / "q.parquet")
    assert_refused(r, "q.quarantine.parquet: is a folder")
    assert not (tmp_path / "q.parquet").exists()


# -- user data is printed as plain text ---------------------------------------------------------

def test_ids_with_markup_or_escape_sequences_are_printed_as_text(tmp_path):
    src = csv(tmp_path / "t.csv", weights("P1") + weights("P[/x]1") + weights("\x1b[31mP2"))
    pats = tmp_path / "p.csv"
    pats.write_text("patient_id,programme\nP1,heart_failure\n")
    r = invoke("score", src, "--patients", pats, "--out", tmp_path / "q.parquet")
    assert r.exit_code == 0, r.output
    assert "P[/x]1" in r.output and "\\x1b[31mP2" in r.output
    assert "\x1b" not in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,programme\nP[/x]1,heart_failure\nP[/x]1,copd\n")
    r = invoke("score", src, "--patients", bad, "--out", tmp_path / "q2.parquet")
    assert_refused(r, "patient_id 'P[/x]1' appears more than once")


# -- foreign exports ----------------------------------------------------------------------------

def test_renaming_onto_an_existing_column_is_refused(tmp_path):
    src = csv(tmp_path / "t.csv", [("P1", "P1", "2026-01-05T08:00Z", "weight", 80)],
              header="id,patient_id,ts,metric,value")
    r = invoke("score", src, "--columns", "id=patient_id", "--out", tmp_path / "q.parquet")
    assert_refused(r, "already has a 'patient_id' column")
    r = invoke("score", src, "--columns", "id=ts,patient_id=ts", "--out",
               tmp_path / "q.parquet")
    assert_refused(r, "several columns to 'ts'")


def test_a_duckdb_interval_column_is_refused_by_name(tmp_path):
    db = tmp_path / "t.duckdb"
    con = duckdb.connect(str(db))
    con.sql("create table t as select 'P1' as patient_id, interval 3 hour as ts, "
            "'weight' as metric, 80.0 as value")
    con.close()
    r = invoke("score", f"{db}:t", "--out", tmp_path / "q.parquet")
    assert_refused(r, "column 'ts'", "DuckDB type INTERVAL")


def test_a_duckdb_input_cannot_read_other_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    db = tmp_path / "t.duckdb"
    con = duckdb.connect(str(db))
    con.sql(f"create view t as select 'P1' as patient_id, content as ts, 'weight' as metric, "
            f"80.0 as value from read_text('{secret}')")
    con.close()
    r = invoke("score", f"{db}:t", "--out", tmp_path / "q.parquet")
    assert_refused(r, "cannot be read")
    assert "do not read me" not in r.output
