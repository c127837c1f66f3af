"""Streaming a file larger than memory (engine/stream.py) gives the in-memory run's results:
the same alerts (same ids, every column), episodes, pending rules, quarantine (same row
numbers) and accounting — on the sample in small chunks, on rows ingest judges across the
input whether the file is in patient order or has to be ordered by DuckDB first, with an
explicit ``--as-of`` (one pass) and with ``--programme``, and on a generated cohort of another
seed; ``veille score --memory-limit`` streams and writes the same files."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from cli import app
from engine import stream
from engine.errors import InputError
from engine.paths import sample_cohort
from engine.pipeline import Engine
from tests.judged import assert_same_results, judged_rows, sample_patients

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def engine():
    return Engine.from_paths(model="default")


def assert_same_run(whole, streamed):
    assert_same_results(whole, streamed, ("queue", "episodes", "pending", "quarantine"))
    if whole.risk is None:
        assert streamed.risk is None
    else:       # a streamed run keeps each patient's latest risk, and counts the grid
        assert_frame_equal(whole.risk.group_by("patient_id", maintain_order=True).last(),
                           streamed.risk)
        assert streamed.risk_points == whole.risk.height
        assert streamed.features is None


def test_the_sample_streamed_in_small_chunks_is_the_in_memory_run(engine):
    telemetry, patients = sample_cohort()
    whole = engine.score(str(telemetry), str(patients), now=NOW)
    seen = []
    streamed = stream.score(engine, str(telemetry), str(patients), chunk_rows=50_000,
                            memory_limit=1 << 30, now=NOW,
                            on_chunk=lambda phase, rows, pats: seen.append((phase, rows, pats)))
    assert whole.queue.height > 1000 and whole.streamed is None
    assert streamed.streamed.endswith("in file order")
    assert_same_run(whole, streamed)
    # two passes (the latest reading first, then the scores), each over every row and patient
    for phase in ("ingest", "score"):
        rows = [r for p, r, _ in seen if p == phase]
        assert len(rows) > 5 and sum(rows) == whole.report.rows_in
        assert sum(n for p, _, n in seen if p == phase) == 300


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """Twelve sample patients with what ingest judges across rows (ids spelt with spaces,
    duplicates in another unit, conflicting duplicates, a patient the table does not list,
    unparseable, future and id-less rows), written twice: in patient order, and shuffled."""
    tel, pats = sample_patients(12)
    bad = judged_rows(tel, NOW)
    first = tel.filter(pl.col("metric") == "weight").row(0, named=True)
    nobody = pl.DataFrame([{**first, "patient_id": "ZZ-NOBODY"}], schema=tel.schema)
    at = tel["patient_id"].search_sorted(first["patient_id"], "right")
    ordered = pl.concat([tel.head(at - 40), bad, tel.slice(at - 40), nobody])
    shuffled = pl.concat([bad.with_columns(patient_id=pl.lit(None, pl.String)).head(1),
                          ordered.sample(fraction=1.0, shuffle=True, seed=3)])
    folder = tmp_path_factory.mktemp("stream")
    ordered.write_parquet(folder / "ordered.parquet", row_group_size=7_000)
    shuffled.write_parquet(folder / "shuffled.parquet", row_group_size=7_000)
    pats.head(14).write_parquet(folder / "patients.parquet")   # two without telemetry
    return folder


@pytest.mark.parametrize("name, read", [("ordered", "in file order"),
                                        ("shuffled", "ordered by DuckDB first")])
def test_rows_judged_across_the_input_are_judged_the_same_in_chunks(engine, dirty, name, read):
    telemetry, patients = str(dirty / f"{name}.parquet"), str(dirty / "patients.parquet")
    whole = engine.score(telemetry, patients, now=NOW)
    assert {"unknown_patient", "conflicting_duplicate", "unparseable_value",
            "future_timestamp"} <= set(whole.report.by_reason)
    assert whole.report.duplicates_collapsed == 2
    streamed = stream.score(engine, telemetry, patients, chunk_rows=9_000,
                            memory_limit=1 << 30, now=NOW)
    assert streamed.streamed.endswith(read)
    assert_same_run(whole, streamed)


def test_as_of_and_programme_stream_in_one_pass(dirty):
    engine = Engine.from_paths()
    telemetry = str(dirty / "shuffled.parquet")
    as_of = dt.datetime(2026, 1, 20, tzinfo=dt.timezone.utc)
    whole = engine.score(telemetry, programme="heart_failure", as_of=as_of, now=NOW)
    assert whole.report.rows_after_as_of > 0
    phases = []
    streamed = stream.score(engine, telemetry, programme="heart_failure", as_of=as_of, now=NOW,
                            chunk_rows=9_000, memory_limit=1 << 30,
                            on_chunk=lambda phase, *_: phases.append(phase))
    assert "ingest" not in phases
    assert_same_run(whole, streamed)
    assert_frame_equal(whole.patients, streamed.patients)


def test_a_generated_cohort_of_another_seed_streams_to_the_same_alerts(engine, tmp_path):
    from engine.synth import write_cohort

    paths = write_cohort(tmp_path, patients=60, days=21, seed=907)
    whole = engine.score(str(paths["telemetry"]), str(paths["patients"]), now=NOW)
    streamed = stream.score(engine, str(paths["telemetry"]), str(paths["patients"]),
                            chunk_rows=20_000, memory_limit=1 << 30, now=NOW)
    assert whole.queue.height > 50
    assert_same_run(whole, streamed)


def test_a_run_using_no_row_is_refused_when_streamed_too(engine, tmp_path):
    path = tmp_path / "naive.parquet"
    pl.DataFrame({"patient_id": ["P1", "P2"] * 50,
                  "ts": [dt.datetime(2026, 1, 1, 8) + dt.timedelta(hours=i) for i in range(100)],
                  "metric": "weight", "value": 80.0}).write_parquet(path)
    with pytest.raises(InputError, match="no usable row.*naive_timestamp.*--tz"):
        stream.score(engine, str(path), programme="heart_failure", chunk_rows=20,
                     memory_limit=1 << 30, now=NOW)


@pytest.mark.parametrize("text, expected", [
    ("4GiB", 4 << 30), ("512MB", 512 * 10**6), ("2G", 2 * 10**9), ("1.5 GiB", 3 << 29),
    ("100%", None), ("300MiB", 300 << 20)])
def test_memory_limits_are_read_as_written(text, expected):
    got = stream.parse_memory(text)
    assert got == (expected if expected is not None else stream.total_memory())


@pytest.mark.parametrize("text", ["", "lots", "0%", "120%", "-1GB", "4 GB RAM"])
def test_a_memory_limit_that_is_not_a_size_is_refused(text):
    with pytest.raises(InputError, match="--memory-limit"):
        stream.parse_memory(text)


def test_the_plan_streams_only_what_does_not_fit():
    telemetry, _ = sample_cohort()
    assert not stream.plan(telemetry, 8 << 30).streams               # 540 k rows fit
    small = stream.plan(telemetry, 900 << 20)
    assert small.streams and small.chunk_rows <= stream.MAX_CHUNK_ROWS
    assert not stream.plan(telemetry.with_suffix(".csv"), 1 << 30).streams   # read whole
    with pytest.raises(InputError, match="below what streaming needs"):
        stream.plan(telemetry, 200 << 20)


def test_veille_score_with_a_memory_limit_streams_and_writes_the_same_files(tmp_path):
    telemetry, patients = sample_cohort()
    runner = CliRunner()
    args = ["score", str(telemetry), "--patients", str(patients), "--as-of",
            "2026-02-15T08:00:00+00:00", "--model", "none"]
    whole = runner.invoke(app, args + ["--out", str(tmp_path / "whole.parquet")])
    assert whole.exit_code == 0, whole.output
    streamed = runner.invoke(app, args + ["--out", str(tmp_path / "streamed.parquet"),
                                          "--memory-limit", "900MiB"])
    assert streamed.exit_code == 0, streamed.output
    assert "streamed in chunks of about" in streamed.output
    assert "streamed" not in whole.output
    for name in ("", ".quarantine"):
        assert_frame_equal(pl.read_parquet(tmp_path / f"whole{name}.parquet"),
                           pl.read_parquet(tmp_path / f"streamed{name}.parquet"))


def test_a_store_with_a_file_larger_than_the_limit_is_refused_with_the_way_out(tmp_path):
    telemetry, patients = sample_cohort()
    res = CliRunner().invoke(app, ["score", str(telemetry), "--patients", str(patients),
                                   "--store", str(tmp_path / "q.duckdb"),
                                   "--memory-limit", "900MiB"])
    assert res.exit_code == 2
    assert "daily batches" in res.output and not (tmp_path / "q.duckdb").exists()
