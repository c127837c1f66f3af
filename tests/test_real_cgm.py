"""The real CGM recordings of ../shared/data/cgm (naive local clock times, NA gaps) go through
ingest, the CGM metrics and the rule packs end to end.

Studies: Hall et al., PLoS Biol 2018 (hall2018.csv); Dubosson et al., Inform Med Unlocked 2018,
D1NAMO (dubosson2018.csv); Tsalikian et al., J Pediatr 2005, DirecNet (tsalikian2005.csv).
"""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app
from engine.detectors import evaluate
from engine.ingest import ingest
from engine.pipeline import Engine
from engine.scores import cgm_metrics

# shared/ lies beside the repository, here and in CI
CGM = Path(__file__).resolve().parents[2] / "shared" / "data" / "cgm"
STUDIES = {"hall2018.csv": "America/Los_Angeles", "dubosson2018.csv": "Europe/Zurich",
           "tsalikian2005.csv": "America/Chicago"}
ADAPT = dict(columns={"id": "patient_id", "time": "ts", "gl": "value"}, metric="glucose",
             unit="mg/dL")

pytestmark = pytest.mark.skipif(not CGM.exists(), reason="shared/data/cgm is not laid out here")


@pytest.mark.parametrize("name,tz", list(STUDIES.items()))
def test_ingest_reconciles_on_real_files(name, tz):
    path = CGM / name
    n_rows = sum(1 for _ in path.open()) - 1
    r = ingest(str(path), tz=tz, **ADAPT)
    rep = r.report
    assert rep.rows_in == n_rows and rep.balanced
    # the files mark sensor gaps as NA; nothing else about them is wrong
    assert set(rep.by_reason) <= {"missing_value", "missing_timestamp", "conflicting_duplicate",
                                  "nonexistent_local_time"}
    assert rep.rows_used > 0.95 * n_rows
    m = cgm_metrics(r.clean.filter(pl.col("metric") == "glucose"))
    assert m.height == rep.patients
    assert m["tir"].is_between(0, 100).all() and m["gmi"].is_between(4, 14).all()


def test_naive_times_without_zone_are_quarantined_not_guessed():
    r = ingest(str(CGM / "dubosson2018.csv"), **ADAPT)
    assert r.report.rows_used == 0
    assert r.report.by_reason["naive_timestamp"] > 8000


def test_engine_scores_a_cgm_export():
    eng = Engine.from_paths(["rules/device_silence.yaml"])
    res = eng.score(str(CGM / "dubosson2018.csv"), tz="Europe/Zurich", programme="diabetes",
                    **ADAPT)
    assert res.report.balanced and res.patients.height == 9
    assert set(res.patients["programme"]) == {"diabetes"}


def test_cli_adapts_an_export(tmp_path):
    out = tmp_path / "q.parquet"
    r = CliRunner().invoke(app, [
        "score", str(CGM / "tsalikian2005.csv"), "--columns", "id=patient_id,time=ts,gl=value",
        "--metric", "glucose", "--unit", "mg/dL", "--tz", "America/Chicago",
        "--programme", "diabetes", "--rules", "rules/device_silence.yaml", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "rows in 23,976" in r.output.replace("\n", " ")
    bad = CliRunner().invoke(app, ["score", str(CGM / "tsalikian2005.csv"), "--columns",
                                   "idpatient_id", "--out", str(out)])
    assert bad.exit_code == 2 and "old=new pairs" in bad.output


@pytest.mark.parametrize("name,tz", list(STUDIES.items()))
def test_diabetes_pack_agrees_with_the_cgm_metrics(name, tz):
    """One definition of the consensus hypoglycaemia event, two independent implementations:
    the pack's level 2 rule (time_below with the sensor's interval), the events_below detector
    and engine.scores.cgm_metrics (runs of readings in polars) agree exactly, subject by subject:
    the same patients have a level 2 event, and both levels count the same events."""
    eng = Engine.from_paths(["rules/diabetes.yaml"])
    res = eng.score(str(CGM / name), tz=tz, programme="diabetes", **ADAPT)
    metrics = cgm_metrics(res.clean, max_gap="30m", interval="5m")
    by_metrics = set(metrics.filter(pl.col("hypo_level2_events") > 0)["patient_id"])
    by_pack = set(res.episodes.filter(pl.col("rule_id") == "diabetes.hypo_level2")["patient_id"])
    assert by_pack == by_metrics
    assert by_pack                                       # each study has some level 2 events

    every = "3650d"                                      # the whole recording
    spec = dict(metric="glucose", fn="events_below", window=every, max_gap="30m",
                interval="5m", end_margin=16)
    counts = (evaluate(res.clean, {"l1": {**spec, "threshold": 70, "end_margin": 0},
                                   "l2": {**spec, "threshold": 54}})
              .group_by("patient_id").agg(pl.col("l1", "l2").last()))
    both = metrics.join(counts, on="patient_id", how="left")
    assert both.height == metrics.height == res.report.patients
    assert both["hypo_level1_events"].cast(pl.Float64).to_list() == both["l1"].to_list()
    assert both["hypo_level2_events"].cast(pl.Float64).to_list() == both["l2"].to_list()
    assert both["l1"].sum() >= both["l2"].sum() > 0


def _readme_export_command() -> list[str]:
    """The command of the README's "Scoring your own export" section, as arguments."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Scoring your own export", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    words = block.replace("\\\n", " ").split()
    assert words[:3] == ["uv", "run", "veille"], words
    return words[3:]


def test_the_readme_export_section_scores_a_study_file_first_try(tmp_path, monkeypatch):
    """A newcomer copies the README's command, with their file in place of cgm.csv."""
    args = _readme_export_command()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cgm.csv").write_bytes((CGM / "dubosson2018.csv").read_bytes())
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    text = r.output.replace("\n", " ")
    assert "rows in 8,055 = used" in text                # every row accounted for
    q = pl.read_parquet(tmp_path / "out" / "cgm-queue.parquet")
    assert q.height > 0 and set(q["pack"]) <= {"diabetes", "device_silence"}
