"""engine.synth variants: the generator's settings for held-out cohorts.

The default variant is the generator as it was (checked against the shipped sample, not only
against itself); each setting moves the data in its documented direction, by about its documented
amount; a setting that only rescales values keeps every reading's time; the same seed and variant
give the same frames; bad settings are refused by name; ``veille generate`` records the settings
it used in ``generator.json``.
"""
from __future__ import annotations

import json
import math
from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from cli import app
from engine.errors import InputError
from engine.synth import (VARIANTS, Variant, generate_cohort, read_cohort,
                          read_generator_record, write_cohort)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data_samples" / "cohort"
FRAMES = ("telemetry", "patients", "events")
DAY = timedelta(days=1)
ARGS = dict(n_patients=140, days=42, seed=5)
#: readings sent on a schedule (one a day, or spot-check slots), one metric per device
SCHEDULED = ("weight", "spo2", "dyspnoea", "cpap_hours", "steps")


@pytest.fixture(scope="module")
def base():
    return generate_cohort(**ARGS)


def cohort(**settings):
    return generate_cohort(**ARGS, variant=Variant(**settings))


def counts(c) -> dict[str, int]:
    n = c.telemetry.group_by("metric").len()
    return dict(zip(n["metric"], n["len"]))


def stable(c, programme: str) -> list[str]:
    """Patients of ``programme`` without a labelled episode."""
    return c.patients.filter((pl.col("programme") == programme) & ~pl.col("patient_id").is_in(
        c.events["patient_id"].implode()))["patient_id"].to_list()


def series(c, metric: str, pids=None) -> pl.DataFrame:
    t = c.telemetry.filter(pl.col("metric") == metric)
    return t if pids is None else t.filter(pl.col("patient_id").is_in(list(pids)))


def assert_same(a, b) -> None:
    for name in FRAMES:
        assert getattr(a, name).equals(getattr(b, name)), name


# -- the default is the generator as it was --------------------------------------------------

def test_default_variant_gives_the_shipped_sample_bit_for_bit():
    """data_samples/cohort was written before variants existed: the default variant remakes it
    (a stored reference, not a fresh run of the same code)."""
    shipped = read_cohort(SAMPLE)
    for variant in (Variant(), "default", VARIANTS["default"]):
        fresh = generate_cohort(300, 42, 20261126, variant=variant)
        for name in FRAMES:
            assert_frame_equal(getattr(fresh, name), getattr(shipped, name))
        a, b = fresh.telemetry["value"].to_numpy(), shipped.telemetry["value"].to_numpy()
        assert np.array_equal(a.view(np.uint64), b.view(np.uint64))  # bits, -0.0 included


@pytest.mark.parametrize("kwargs", [dict(n_patients=60, days=28, seed=3),
                                    dict(n_patients=20, days=21, seed=4,
                                         programmes=["diabetes"]),
                                    dict(n_patients=35, days=30, seed=8, episode_rate=1.0)])
def test_default_variant_equals_no_variant(kwargs):
    plain = generate_cohort(**kwargs)
    assert_same(plain, generate_cohort(**kwargs, variant=Variant()))
    explicit = Variant(**{f.name: getattr(Variant(), f.name) for f in fields(Variant)})
    assert_same(plain, generate_cohort(**kwargs, variant=explicit))


def test_episode_rate_argument_overrides_the_variant(base):
    assert_same(base, generate_cohort(**ARGS, episode_rate=0.3,
                                      variant=Variant(episode_rate=0.15)))
    noisy = generate_cohort(**ARGS, episode_rate=0.3,
                            variant=Variant(episode_rate=0.15, noise_scale=1.5))
    assert noisy.events.equals(base.events)


# -- each setting moves the data in its documented direction ---------------------------------

def test_noise_scale_doubles_the_residuals_and_keeps_every_time(base):
    noisy = cohort(noise_scale=2.0)
    # values only: the same readings at the same times (but the AHI and leak a CPAP sends only
    # for a night of 30 minutes' use or more, a value that noise moves)
    times = [c.telemetry.filter(~pl.col("metric").is_in(["ahi", "mask_leak"]))
             .select("patient_id", "metric", "ts") for c in (base, noisy)]
    assert times[0].equals(times[1])
    assert noisy.patients.equals(base.patients) and noisy.events.equals(base.events)
    # the residual around a stable patient's level, without artefacts (whose size is not noise)
    clean = {scale: cohort(noise_scale=scale, artefact_rate_scale=0.0) for scale in (1.0, 2.0)}
    pids = stable(base, "heart_failure")
    assert len(pids) >= 15
    for metric in ("weight", "heart_rate"):
        sd = {}
        for scale, c in clean.items():
            level = pl.col("value").median().over("patient_id")
            sd[scale] = series(c, metric, pids).select((pl.col("value") - level).std()).item()
        assert 1.85 <= sd[2.0] / sd[1.0] <= 2.15, (metric, sd)
    # the CGM's sensor error and wander too: glucose spreads more around the patient's mean
    sd = [series(c, "glucose").group_by("patient_id").agg(pl.col("value").std())["value"]
          .median() for c in (base, noisy)]
    assert sd[1] > 1.3 * sd[0]


def test_sampling_scale_halves_scheduled_readings_and_keeps_the_cgm_interval(base):
    sparse, dense = cohort(sampling_scale=2.0), cohort(sampling_scale=0.5)
    n, n2, n05 = counts(base), counts(sparse), counts(dense)
    for metric in SCHEDULED:
        assert 0.42 <= n2[metric] / n[metric] <= 0.58, (metric, n2[metric], n[metric])
        assert n05[metric] >= n[metric], metric
    # never more than the schedule: one weighing a day, four spot-check slots
    per_day = series(dense, "weight").group_by(
        "patient_id", pl.col("ts").dt.convert_time_zone("Europe/Paris").dt.date()).len()
    assert per_day["len"].max() == 1
    # the CGM keeps its 5 minutes; its signal losses last longer (a little less data)
    steps = series(sparse, "glucose").with_columns(
        pl.col("ts").diff().over("patient_id").dt.total_minutes().alias("d"))
    assert steps["d"].median() == 5
    assert 0.9 < n2["glucose"] / n["glucose"] < 1.0
    # clinic checks are not on a device's schedule: untouched
    for metric in ("albumin", "icope_locomotion"):
        assert series(sparse, metric).equals(series(base, metric)), metric


def test_missed_rate_scale_multiplies_the_odds_of_a_missed_reading(base):
    missed = cohort(missed_rate_scale=2.0)
    n, n2 = counts(base), counts(missed)
    hf = base.patients.filter(pl.col("programme") == "heart_failure")["patient_id"]
    hf_weights = [series(c, "weight", hf).height for c in (base, missed)]

    def sent(k):  # share sent once the odds of missing are doubled
        return k / (k + 2.0 * (1.0 - k))

    assert hf_weights[1] / hf_weights[0] == pytest.approx(sent(0.9) / 0.9, abs=0.03)
    assert n2["cpap_hours"] / n["cpap_hours"] == pytest.approx(sent(0.95) / 0.95, abs=0.03)
    assert n2["dyspnoea"] / n["dyspnoea"] == pytest.approx(sent(0.6) / 0.6, abs=0.05)
    assert n2["spo2"] < 0.9 * n["spo2"]


def test_nothing_missed_and_no_gaps_means_a_weighing_every_day(base):
    full = cohort(missed_rate_scale=0.0, gap_rate_scale=0.0)
    pids = stable(full, "heart_failure")
    w = series(full, "weight", pids).with_columns(
        pl.col("ts").diff().over("patient_id").alias("d"))
    gaps = w["d"].drop_nulls()
    assert gaps.max() < 1.5 * DAY and gaps.min() > 0.5 * DAY
    # and more unlabelled gaps open days-long holes in the same schedule
    gappy = cohort(missed_rate_scale=0.0, gap_rate_scale=4.0)
    holes = series(gappy, "weight", pids).with_columns(
        pl.col("ts").diff().over("patient_id").alias("d")).filter(pl.col("d") > 1.5 * DAY)
    assert holes.height >= 0.5 * len(pids)  # 0.24 gaps a week: about 1.4 per patient


def test_gap_rate_scale_thins_every_device(base):
    n, n0, n4 = counts(base), counts(cohort(gap_rate_scale=0.0)), counts(cohort(
        gap_rate_scale=4.0))
    for metric in SCHEDULED + ("glucose",):
        assert n0[metric] >= n[metric] > n4[metric], metric


def test_episode_rate_halves_the_events(base):
    rare = cohort(episode_rate=0.15)
    assert 0.4 <= rare.events.height / base.events.height <= 0.6
    assert rare.patients.equals(base.patients)
    assert generate_cohort(**ARGS, variant=Variant(episode_rate=0.0)).events.height == 0


@pytest.fixture(scope="module")
def labelled():
    """Heart failure and diabetes patients, every one with an episode."""
    return generate_cohort(60, 42, seed=11, programmes=["heart_failure", "diabetes"],
                           episode_rate=1.0)


def weight_gain(c, e) -> float:
    """Mean weight over the 3 days before the event minus the dry weight, kg."""
    w = series(c, "weight", [e["patient_id"]]).filter(
        (pl.col("ts") >= e["event_time"] - 3 * DAY) & (pl.col("ts") < e["event_time"]))
    return float(w["value"].mean()) - e["baseline_weight_kg"] if w.height else math.nan


def test_effect_scale_shrinks_episode_changes_and_keeps_event_levels(labelled):
    subtle = generate_cohort(60, 42, seed=11, programmes=["heart_failure", "diabetes"],
                             episode_rate=1.0, variant=Variant(effect_scale=0.5))
    assert subtle.events.equals(labelled.events)  # the same episodes, severities included
    hf = labelled.events.filter(pl.col("event_type") == "hf_decompensation").join(
        labelled.patients, on="patient_id").to_dicts()
    assert len(hf) >= 15
    gains = np.array([[weight_gain(c, e) for c in (labelled, subtle)] for e in hf])
    gains = gains[~np.isnan(gains).any(axis=1)]
    ratio = np.median(gains[:, 1]) / np.median(gains[:, 0])
    assert 0.4 <= ratio <= 0.65, gains
    assert np.mean(gains[:, 1] < gains[:, 0]) >= 0.9
    # a target level defines its event: a severe hypoglycaemia still reaches it, reading for
    # reading, and a hyperglycaemia (an added rise) is lower
    for event_type, same in (("hypoglycaemia_severe", True), ("hyperglycaemia", False)):
        pids = labelled.events.filter(pl.col("event_type") == event_type)["patient_id"]
        assert pids.len() >= 2, event_type
        a, b = series(labelled, "glucose", pids), series(subtle, "glucose", pids)
        assert a.equals(b) is same, event_type
        if not same:  # the same readings, none higher and those of the episode lower
            assert a.select("patient_id", "ts").equals(b.select("patient_id", "ts"))
            assert (b["value"] <= a["value"]).all() and (b["value"] < a["value"]).sum() > 50


def test_prodrome_scale_stretches_onset_to_event(labelled):
    slow = generate_cohort(60, 42, seed=11, programmes=["heart_failure", "diabetes"],
                           episode_rate=1.0, variant=Variant(prodrome_scale=1.5))
    both = labelled.events.join(slow.events, on=["patient_id", "event_type"], suffix="_slow")
    assert both.height >= 0.8 * labelled.events.height  # some long leads may no longer fit
    lead = (pl.col("event_time") - pl.col("onset")).dt.total_seconds()
    slow_lead = (pl.col("event_time_slow") - pl.col("onset_slow")).dt.total_seconds()
    both = both.with_columns(lead.alias("lead"), slow_lead.alias("slow_lead"))
    prodrome = both.filter(pl.col("event_type") != "device_silence")
    assert prodrome.height >= 20
    assert ((prodrome["slow_lead"] - 1.5 * prodrome["lead"]).abs() <= 1).all()
    silence = both.filter(pl.col("event_type") == "device_silence")
    assert (silence["slow_lead"] == silence["lead"]).all()  # a silence is not a prodrome


def test_artefact_rate_scale_multiplies_wrong_readings():
    def cold_fingers(scale: float) -> int:  # SpO2 6 points or more under the patient's median
        c = generate_cohort(80, 42, seed=ARGS["seed"], programmes=["copd", "covid_home"],
                            episode_rate=0.0, variant=Variant(artefact_rate_scale=scale))
        s = series(c, "spo2")
        return s.filter(pl.col("value") <= pl.col("value").median().over("patient_id") - 6
                        ).height

    n1, n0, n3 = cold_fingers(1.0), cold_fingers(0.0), cold_fingers(3.0)
    assert n1 >= 50 and n0 <= 0.05 * n1 and 2.3 <= n3 / n1 <= 3.7, (n0, n1, n3)


# -- presets, reproducibility, errors --------------------------------------------------------

def test_shifted_is_harder_on_every_setting():
    d, s = VARIANTS["default"], VARIANTS["shifted"]
    assert d == Variant() and d.name == "default" and s.name == "shifted"
    assert s.noise_scale > 1 and s.episode_rate < d.episode_rate and s.sampling_scale > 1
    assert s.missed_rate_scale > 1 and s.effect_scale < 1 and s.prodrome_scale > 1
    assert s.gap_rate_scale > 1 and s.artefact_rate_scale > 1
    with pytest.raises(TypeError):
        VARIANTS["default"] = s  # the presets cannot be changed by accident
    assert Variant(**s.to_dict()) == s and Variant(noise_scale=1.1).name is None


def test_same_seed_and_variant_same_frames(base):
    a = generate_cohort(**ARGS, variant="shifted")
    b = generate_cohort(**ARGS, variant=Variant(**VARIANTS["shifted"].to_dict()))
    assert_same(a, b)
    assert not a.telemetry.equals(base.telemetry)
    assert a.patients.equals(base.patients)  # the same people, followed differently


@pytest.mark.parametrize("name", [f.name for f in fields(Variant)])
@pytest.mark.parametrize("bad", [-0.5, 5.0, math.nan, math.inf, "2", True, None])
def test_bad_settings_name_themselves(name, bad):
    with pytest.raises(InputError, match=f"'{name}' setting of Variant"):
        Variant(**{name: bad})
    with pytest.raises(InputError, match=f"'{name}'"):
        Variant().replace(**{name: bad})


@pytest.mark.parametrize("kwargs, name", [
    (dict(variant="harder"), "variant"),
    (dict(variant=3), "variant"),
    (dict(variant="shifted", episode_rate=1.5), "episode_rate"),
    (dict(variant=Variant(), episode_rate=math.nan), "episode_rate"),
])
def test_bad_variant_arguments_name_themselves(kwargs, name):
    with pytest.raises(InputError, match=f"'{name}'"):
        generate_cohort(5, 5, 1, **kwargs)


# -- writing and the command line ------------------------------------------------------------

def test_write_cohort_records_its_settings(tmp_path):
    plain = write_cohort(tmp_path / "a", patients=8, days=6, seed=2)
    record, variant = read_generator_record(tmp_path / "a")
    assert variant == Variant() and record["variant"] == "default"
    assert (record["patients"], record["days"], record["seed"]) == (8, 6, 2)
    assert record["start"] == "2026-01-05T00:00:00Z" and len(record["programmes"]) == 7
    write_cohort(tmp_path / "b", patients=8, days=6, seed=2, variant="shifted",
                 episode_rate=0.5)
    record, variant = read_generator_record(tmp_path / "b")
    assert variant == VARIANTS["shifted"].replace(episode_rate=0.5)
    assert record["variant"] is None and record["settings"]["episode_rate"] == 0.5
    assert set(plain) == set(FRAMES)
    with pytest.raises(InputError, match="generator.json"):
        read_generator_record(tmp_path)


def test_command_line_variant_and_overrides(tmp_path):
    runner = CliRunner()
    base = ["generate", "--patients", "9", "--days", "6", "--seed", "4"]
    r = runner.invoke(app, base + ["--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert "generator.json" in r.output
    assert json.loads((tmp_path / "d" / "generator.json").read_text())["variant"] == "default"
    write_cohort(tmp_path / "ref", patients=9, days=6, seed=4)
    for name in FRAMES:  # the command's default is the library's default, byte for byte
        assert (tmp_path / "d" / f"{name}.parquet").read_bytes() == \
            (tmp_path / "ref" / f"{name}.parquet").read_bytes()

    r = runner.invoke(app, base + ["--out", str(tmp_path / "s"), "--variant", "shifted",
                                   "--noise-scale", "2", "--prodrome-scale", "1.1"])
    assert r.exit_code == 0, r.output
    record, variant = read_generator_record(tmp_path / "s")
    assert variant == VARIANTS["shifted"].replace(noise_scale=2.0, prodrome_scale=1.1)
    assert_same(read_cohort(tmp_path / "s"), generate_cohort(9, 6, 4, variant=variant))

    r = runner.invoke(app, base + ["--out", str(tmp_path / "e"), "--episode-rate", "1"])
    assert r.exit_code == 0, r.output
    assert read_generator_record(tmp_path / "e")[1] == Variant(episode_rate=1.0)

    for args, phrase in ((["--noise-scale", "9"], "--noise-scale"),
                         (["--missed-rate-scale", "nan"], "--missed-rate-scale"),
                         (["--variant", "harder"], "--variant must be one of default, shifted")):
        r = runner.invoke(app, base + ["--out", str(tmp_path / "x")] + args)
        assert r.exit_code == 2 and phrase in r.output, r.output
        assert "Traceback" not in r.output
    assert not (tmp_path / "x").exists()
