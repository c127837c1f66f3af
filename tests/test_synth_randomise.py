"""engine.synth.randomise: the domain-randomised training cohort of the risk model.

Its parts are ordinary cohorts of their own seed and settings (so the default generator is
untouched); the settings cover their ranges evenly (a Latin hypercube) and never equal a named
preset; patient ids are unique; the same arguments give the same bytes; ``veille generate
--randomise`` records every part in ``generator.json`` and refuses settings given beside it.
"""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from cli import app
from engine.errors import InputError
from engine.synth import VARIANTS, generate_cohort
from engine.synth.randomise import RANGES, draw_settings, part_seed, randomised_cohort


def test_settings_cover_each_range_evenly_and_are_no_preset():
    parts = 30
    settings = draw_settings(11, parts)
    assert settings == draw_settings(11, parts) and settings != draw_settings(12, parts)
    for name, (lo, hi) in RANGES.items():
        values = np.array([getattr(v, name) for v in settings])
        assert lo - 1e-3 <= values.min() and values.max() <= hi + 1e-3
        # a Latin hypercube: exactly one part in each of the `parts` slices of the range
        u = (values - lo) / (hi - lo) if name == "episode_rate" \
            else np.log(values / lo) / np.log(hi / lo)
        slices = np.clip(np.floor(u * parts + 1e-9), 0, parts - 1).astype(int)
        assert len(set(slices.tolist())) >= parts - 2  # rounding to 3 decimals may move one
    assert not set(settings) & set(VARIANTS.values())


def test_parts_are_ordinary_cohorts_renumbered():
    cohort, records = randomised_cohort(30, days=10, seed=4, parts=3)
    assert [r["patients"] for r in records] == [10, 10, 10]
    assert [r["seed"] for r in records] == [part_seed(4, k) for k in range(3)] == \
        [4001, 4002, 4003]
    ids = cohort.patients["patient_id"].to_list()
    assert ids == [f"P{i:06d}" for i in range(1, 31)]
    assert set(cohort.telemetry["patient_id"].unique()) <= set(ids)
    # part 1 is the cohort of its own seed and settings, its ids moved by 10
    k = 1
    v = draw_settings(4, 3)[k]
    alone = generate_cohort(10, 10, part_seed(4, k), variant=v)
    moved = (cohort.patients.filter(pl.col("patient_id") >= "P000011")
             .filter(pl.col("patient_id") <= "P000020"))
    assert_frame_equal(moved.drop("patient_id"), alone.patients.drop("patient_id"))
    tel = cohort.telemetry.filter(pl.col("patient_id").is_between(pl.lit("P000011"), pl.lit("P000020")))
    assert_frame_equal(tel.drop("patient_id"), alone.telemetry.drop("patient_id"))


def test_bad_part_counts_are_refused():
    with pytest.raises(InputError, match="randomised parts"):
        randomised_cohort(10, days=5, seed=1, parts=0)
    with pytest.raises(InputError, match="one patient per part"):
        randomised_cohort(2, days=5, seed=1, parts=3)


def test_generate_randomise_is_deterministic_and_recorded(tmp_path):
    runner = CliRunner()
    for d in ("a", "b"):
        r = runner.invoke(app, ["generate", "--patients", "14", "--days", "7", "--seed", "3",
                                "--randomise", "2", "--out", str(tmp_path / d)])
        assert r.exit_code == 0, r.output
    for name in ("telemetry", "patients", "events"):
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == \
            (tmp_path / "b" / f"{name}.parquet").read_bytes()
    record = json.loads((tmp_path / "a" / "generator.json").read_text())
    assert record["seed"] == 3 and record["variant"] is None and record["settings"] is None
    parts = record["randomised"]["cohorts"]
    assert [p["seed"] for p in parts] == [3001, 3002]
    assert [p["settings"] for p in parts] == [v.to_dict() for v in draw_settings(3, 2)]
    r = runner.invoke(app, ["generate", "--patients", "14", "--days", "7", "--randomise", "2",
                            "--noise-scale", "2", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--noise-scale" in r.output and not (tmp_path / "c").exists()
    r = runner.invoke(app, ["generate", "--patients", "14", "--days", "7", "--randomise", "2",
                            "--variant", "shifted", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--variant" in r.output
