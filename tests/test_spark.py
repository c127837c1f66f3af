"""veille on Spark (engine/distributed/spark.py) gives the single-machine run's results: the
same alerts (same ids, every column), risks, quarantine and row accounting, on a local Spark
with two executors; and a veille error raised in a worker reaches the user as veille's own
message. The whole sample cohort on local[2], and a few of its patients with every kind of row
ingest judges across the input."""
from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from cli import app
from engine.distributed import spark as S
from engine.errors import InputError
from engine.paths import sample_cohort
from engine.pipeline import Engine
from tests.judged import assert_same_results, judged_rows, sample_patients

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def session():
    spark = S.session("local[2]")
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def engine():
    return Engine.from_paths(model="default")


def assert_same_run(local, distributed):
    assert_same_results(local, distributed, ("queue", "episodes", "pending", "risk",
                                             "quarantine"))


# about 80 s on a 2-core machine, in the default suite (CI): the sample, on two executors
def test_the_sample_on_two_executors_gives_the_single_machine_run(session, engine):
    telemetry, patients = sample_cohort()
    t = time.perf_counter()
    local = engine.score(str(telemetry), str(patients), now=NOW)
    t_local = time.perf_counter() - t
    t = time.perf_counter()
    distributed = S.score(str(telemetry), str(patients), model="default", engine=engine,
                          spark=session, now=NOW)
    t_spark = time.perf_counter() - t
    print(f"\nsample: single machine {t_local:.1f} s, Spark local[2] {t_spark:.1f} s")
    assert local.queue.height > 1000 and local.risk.height > 70_000
    assert_same_run(local, distributed)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """A few sample patients with what ingest must judge across rows: ids spelt with spaces,
    exact duplicates in another unit, conflicting duplicates, a patient the table does not
    list, unparseable and future readings; and patients enrolled without any telemetry."""
    tel, pats = sample_patients(8)
    bad = judged_rows(tel, NOW)
    first = bad.row(0, named=True)
    bad = pl.concat([bad, pl.DataFrame([{**first, "patient_id": "NOBODY"},
                                        {**first, "patient_id": None}], schema=tel.schema)])
    mixed = pl.concat([tel.head(5000), bad, tel.slice(5000)])
    folder = tmp_path_factory.mktemp("dirty")
    mixed.write_parquet(folder / "telemetry.parquet")
    pats.head(10).write_parquet(folder / "patients.parquet")   # two without telemetry
    return folder / "telemetry.parquet", folder / "patients.parquet"


def test_rows_judged_across_the_input_are_judged_the_same_in_slices(session, engine, dirty):
    telemetry, patients = dirty
    local = engine.score(str(telemetry), str(patients), now=NOW)
    assert set(local.report.by_reason) == {"unknown_patient", "conflicting_duplicate",
                                           "unparseable_value", "future_timestamp",
                                           "missing_patient_id"}
    assert local.report.duplicates_collapsed == 2
    # more slices than patients: some hold only patients enrolled without telemetry, or none
    distributed = S.score(str(telemetry), str(patients), model="default", engine=engine,
                          spark=session, now=NOW, partitions=13)
    assert_same_run(local, distributed)


def test_as_of_and_programme_are_the_single_machine_runs(session, dirty):
    telemetry, _ = dirty
    engine = Engine.from_paths()
    as_of = dt.datetime(2026, 1, 20, tzinfo=dt.timezone.utc)
    local = engine.score(str(telemetry), programme="heart_failure", as_of=as_of, now=NOW)
    assert local.report.rows_after_as_of > 0
    distributed = S.score(str(telemetry), programme="heart_failure", engine=engine,
                          spark=session, as_of=as_of, now=NOW, partitions=3)
    assert_same_run(local, distributed)


def test_an_input_error_in_a_worker_is_veilles_own_message(session, tmp_path):
    bad = tmp_path / "telemetry.parquet"
    pl.DataFrame({"patient_id": ["P1", "P2"], "ts": [NOW, NOW], "metric": ["weight"] * 2,
                  "value": [True, False]}).write_parquet(bad)
    with pytest.raises(InputError) as local:
        Engine.from_paths().score(str(bad), programme="heart_failure", now=NOW)
    with pytest.raises(InputError) as distributed:
        S.score(str(bad), programme="heart_failure", spark=session, now=NOW)
    assert str(distributed.value) == str(local.value)
    assert "column 'value': has type Boolean" in str(distributed.value)

    result = CliRunner().invoke(app, ["score", str(bad), "--programme", "heart_failure",
                                      "--engine", "spark", "--out", str(tmp_path / "q.parquet")])
    assert result.exit_code == 2
    assert "column 'value': has type Boolean" in result.output
    assert "Traceback" not in result.output and "java" not in result.output.lower()


def test_veille_score_on_spark_writes_the_same_files(session, dirty, tmp_path):
    telemetry, patients = dirty
    runner = CliRunner()
    common = ["score", str(telemetry), "--patients", str(patients), "--model", "none",
              "--as-of", "2026-02-01T00:00Z"]
    here = runner.invoke(app, [*common, "--out", str(tmp_path / "local.parquet")])
    there = runner.invoke(app, [*common, "--engine", "spark", "--master", "local[2]",
                                "--partitions", "3", "--out", str(tmp_path / "spark.parquet")])
    assert here.exit_code == 0, here.output
    assert there.exit_code == 0, there.output
    for name in ("", ".quarantine"):
        assert_frame_equal(pl.read_parquet(tmp_path / f"local{name}.parquet"),
                           pl.read_parquet(tmp_path / f"spark{name}.parquet"))
    assert "rows     rows in" in there.output

    refused = runner.invoke(app, [*common, "--engine", "spark",
                                  "--store", str(tmp_path / "q.duckdb")])
    assert refused.exit_code == 2 and "--store is not available with --engine spark" \
        in refused.output
