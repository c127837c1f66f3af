"""The command line driven as a user would (Typer's CliRunner), end to end on real files."""
from __future__ import annotations

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app
from engine.queue import QUEUE_COLUMNS

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("score") / "queue.parquet"
    return invoke("score", "--out", out), out


def test_score_bundled_sample(sample_run):
    result, out = sample_run
    assert result.exit_code == 0, result.output
    assert "rows in 539,833 = used 539,833 + quarantined 0 + duplicates collapsed 0" in \
        result.output.replace("\n", " ")
    queue = pl.read_parquet(out)
    from engine.hygiene import HYGIENE_COLUMNS

    # veille score runs alert hygiene unless --no-hygiene: its columns follow the queue's
    assert queue.schema == pl.Schema({**QUEUE_COLUMNS, **HYGIENE_COLUMNS})
    assert queue.height > 0
    assert out.with_name("queue.quarantine.parquet").exists()


def test_score_dirty_csv_with_zone_writes_jsonl(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("patient_id,ts,metric,value,unit\n"
                   "P1,2026-01-05 08:00,weight,80.0,kg\n"
                   "P1,2026-01-06 08:00,weight,176.4,lb\n"
                   "P1,2026-01-07 08:00,weight,abc,kg\n"
                   "P1,2026-01-07 08:00,spo2,0.4,1\n")
    out = tmp_path / "q.jsonl"
    r = invoke("score", src, "--tz", "Europe/Paris", "--out", out)
    assert r.exit_code == 0, r.output
    text = r.output.replace("\n", " ")
    assert "rows in 4 = used 2 + quarantined 2 + duplicates collapsed 0" in text
    assert "unparseable_value 1" in text and "implausible_value 1" in text
    q = pl.read_ndjson(tmp_path / "q.quarantine.jsonl")
    assert sorted(q["reason"].to_list()) == ["implausible_value", "unparseable_value"]


def test_score_bad_file_is_one_paragraph_and_writes_nothing(tmp_path):
    bad = tmp_path / "t.parquet"
    bad.write_text("patient_id,ts\n")
    out = tmp_path / "q.parquet"
    r = invoke("score", bad, "--out", out)
    assert r.exit_code == 2
    assert "cannot be read as PARQUET" in r.output and "Traceback" not in r.output
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_score_bad_output_extension_fails_before_work(tmp_path):
    r = invoke("score", "--out", tmp_path / "q.xlsx")
    assert r.exit_code == 2 and "cannot tell the output format" in r.output


def test_generate_is_deterministic(tmp_path):
    for d in ("a", "b"):
        r = invoke("generate", "--patients", 12, "--days", 4, "--seed", 7, "--out", tmp_path / d)
        assert r.exit_code == 0, r.output
    for name in ("telemetry", "patients", "events"):
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == \
            (tmp_path / "b" / f"{name}.parquet").read_bytes()
    r = invoke("generate", "--patients", 3, "--days", 2, "--start", "5 Jan", "--out", tmp_path)
    assert r.exit_code == 2 and "--start must be an ISO date" in r.output


def test_rules_test_passes_on_shipped_packs():
    r = invoke("rules", "test", "rules/")
    assert r.exit_code == 0, r.output
    assert " 0 failed" in r.output


def test_backtest_markdown():
    r = invoke("backtest", "--markdown")
    assert r.exit_code == 0, r.output
    assert "| pack | events | detected early |" in r.output
    assert "| heart_failure |" in r.output


def test_shipped_site_override_passes_its_tests_and_changes_the_queue(tmp_path):
    r = invoke("rules", "test", "rules/", "--site", "rules/sites/meuse.yaml")
    assert r.exit_code == 0, r.output
    explain = invoke("rules", "explain", "hf.weight_gain_1kg_1d", "--site",
                     "rules/sites/meuse.yaml")
    assert explain.exit_code == 0 and "1.36 kg" in explain.output and "meuse" in explain.output
    out = tmp_path / "q.parquet"
    assert invoke("score", "--out", out, "--site", "rules/sites/meuse.yaml").exit_code == 0
    queue = pl.read_parquet(out)
    covid_only = pl.read_parquet("data_samples/cohort/patients.parquet").filter(
        pl.col("programme") != "covid_home")["patient_id"].implode()
    assert queue.filter((pl.col("pack") == "news2")
                        & pl.col("patient_id").is_in(covid_only)).height == 0
