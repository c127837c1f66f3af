"""The rule language's second edition, end to end: per-patient targets from the care plan,
time of day in the patient's zone and time since a dated field, named conditions, labels,
pending rules, and what pack tests can assert (reason, evidence, labels, values, --name).

The in-pack tests of rules/*.yaml cover each feature on both sides of its boundaries; these
tests cover what a pack test cannot: the patients table, the command line, the outputs, and the
messages of a misuse.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from engine.errors import InputError, RuleError
from engine.pipeline import Engine
from engine.ruleset import load_rules_text

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)      # a Monday, winter (Paris = UTC+1)

PACK = """
pack: demo
version: "1"
scope: {cohort: copd}
labels: {domain: respiratory}
params:
  spo2_low:
    value: 92 %
    min: 85 %
    max: 95 %
    patient: spo2_target_low
  spo2_ok: 94 %
conditions:
  hypoxic: spo2 < spo2_low
  morning: hour_of_day >= 7 and hour_of_day < 11
rules:
  - id: demo.low
    title: Low SpO2
    when: hypoxic
    resolve_when: spo2 > spo2_ok
    severity: high
    labels: {device: oximeter}
    reason: "SpO2 {spo2} under {spo2_low}."
  - id: demo.morning_low
    title: Low SpO2 in the morning
    when: hypoxic and morning
    for: 2h
    severity: low
  - id: demo.new
    title: First week
    when: since_enrolment < 7 and spo2 < 95
    severity: low
"""


def engine(sites: dict | None = None) -> Engine:
    return Engine(load_rules_text({"demo.yaml": PACK}, sites))


def telemetry(rows) -> pl.DataFrame:
    """rows: (patient, hours from T0, spo2)."""
    return pl.DataFrame({
        "patient_id": [r[0] for r in rows], "metric": "spo2",
        "ts": [T0 + timedelta(hours=r[1]) for r in rows], "value": [float(r[2]) for r in rows],
        "unit": "%"})


def patients(**extra) -> pl.DataFrame:
    base = {"patient_id": ["a", "b"], "programme": ["copd", "copd"],
            "enrolled_at": [T0 - timedelta(days=30), T0 - timedelta(days=2)]}
    return pl.DataFrame({**base, **extra})


# -- per-patient targets ---------------------------------------------------------------------------
def test_a_care_plan_target_replaces_the_param_for_that_patient_only():
    tel = telemetry([("a", 0, 96), ("a", 1, 91), ("b", 0, 96), ("b", 1, 91)])
    res = engine().score(tel, patients(spo2_target_low=[88.0, None]))
    low = res.episodes.filter(pl.col("rule_id") == "demo.low")
    assert low["patient_id"].to_list() == ["b"]              # 91 is under 92, not under 88
    evidence = json.loads(low["evidence"][0])
    assert evidence["spo2_low"] == {"value": 92.0, "unit": "%"}
    res = engine().score(telemetry([("a", 0, 96), ("a", 1, 87)]),
                         patients(spo2_target_low=[88.0, None]))
    ev = json.loads(res.episodes.filter(pl.col("rule_id") == "demo.low")["evidence"][0])
    assert ev["spo2_low"] == {"value": 88.0, "unit": "%"}   # the value this patient got


def test_a_care_plan_value_outside_the_param_bounds_names_the_row(tmp_path):
    path = tmp_path / "patients.csv"
    patients(spo2_target_low=[88.0, 80.0]).write_csv(path)
    with pytest.raises(InputError) as err:
        engine().score(telemetry([("a", 0, 96)]), str(path))
    text = str(err.value)
    assert "patients.csv, row 2, column 'spo2_target_low'" in text
    assert "param 'spo2_low' of pack 'demo'" in text and "below the minimum 85" in text


def test_an_implausible_care_plan_value_is_refused_when_the_table_is_read():
    with pytest.raises(InputError, match="row 1, column 'dry_weight_kg'.*outside 20..350 kg"):
        Engine.from_paths(["rules/heart_failure.yaml"]).score(
            telemetry([("a", 0, 96)]), patients(dry_weight_kg=[3.0, None]))


def test_explain_shows_where_a_patients_value_comes_from(tmp_path):
    path = tmp_path / "patients.csv"
    patients(spo2_target_low=[88.0, None], tz=["Europe/Paris", None]).write_csv(path)
    pack = tmp_path / "demo.yaml"
    pack.write_text(PACK)
    runner = CliRunner()
    r = runner.invoke(app, ["rules", "explain", "demo.morning_low", "--rules", str(pack),
                            "--patient", "a", "--patients", str(path)])
    assert r.exit_code == 0, r.output
    assert "for patient a (" in r.output and "row 1)" in r.output
    assert "spo2_low = 88%   from the care plan: column spo2_target_low" in r.output
    assert "local time in Europe/Paris" in r.output
    r = runner.invoke(app, ["rules", "explain", "demo.morning_low", "--rules", str(pack),
                            "--patient", "b", "--patients", str(path)])
    assert "spo2_low = 92%   the pack's value: column spo2_target_low is empty" in r.output
    assert "local time in UTC" in r.output
    r = runner.invoke(app, ["rules", "explain", "demo.low", "--rules", str(pack),
                            "--patient", "zz", "--patients", str(path)])
    assert r.exit_code == 2 and "patient 'zz' is not in the patients table" in r.output
    r = runner.invoke(app, ["rules", "explain", "demo.low", "--rules", str(pack),
                            "--patient", "a"])
    assert r.exit_code == 2 and "--patient needs --patients" in r.output


# -- time of day, time zones, time since ------------------------------------------------------------
def test_hour_of_day_follows_the_patients_zone_and_summer_time():
    # 06:30 UTC is 07:30 in Paris in January and 08:30 in July: both in the morning; in UTC it
    # is not yet 07:00
    for start, zone, fires in [(T0, "Europe/Paris", True), (T0, None, False),
                               (datetime(2026, 7, 6, tzinfo=timezone.utc), "Europe/Paris", True)]:
        rows = [("a", h, 90) for h in (6.5, 8.5)]
        tel = telemetry(rows).with_columns(pl.col("ts") + (start - T0))
        res = engine().score(tel, patients(tz=[zone, None]))
        got = res.episodes.filter(pl.col("rule_id") == "demo.morning_low")
        assert (got.height == 1) is fires, (start, zone)


def test_the_sites_time_zone_serves_patients_without_one():
    site = {"s.yaml": "site: s\ntime_zone: Europe/Paris\npacks: {}\n"}
    tel = telemetry([("a", 6.5, 90), ("a", 8.5, 90)])
    res = engine(site).score(tel, patients())
    assert res.episodes.filter(pl.col("rule_id") == "demo.morning_low").height == 1


@pytest.mark.parametrize("sites,message", [
    ({"s.yaml": "site: s\ntime_zone: Paris\npacks: {}\n"}, "is not an IANA time zone"),
    ({"s.yaml": "site: s\ntime_zone: Europe/Paris\npacks: {}\n",
      "t.yaml": "site: t\ntime_zone: America/Cayenne\npacks: {}\n"}, "differs from"),
])
def test_a_bad_site_time_zone_is_located(sites, message):
    with pytest.raises(RuleError, match=message) as err:
        engine(sites)
    assert ":2:12:" in str(err.value)


def test_a_bad_patient_time_zone_names_the_row():
    with pytest.raises(InputError, match="row 2, column 'tz'.*not an IANA time zone"):
        engine().score(telemetry([("a", 0, 96)]), patients(tz=["Europe/Paris", "CET+1"]))


def test_since_enrolment_counts_from_the_patients_table():
    tel = telemetry([("a", 1, 94), ("b", 1, 94)])
    res = engine().score(tel, patients())
    new = res.episodes.filter(pl.col("rule_id") == "demo.new")
    assert new["patient_id"].to_list() == ["b"]             # enrolled 2 days ago, not 30
    assert json.loads(new["evidence"][0])["since_enrolment"]["unit"] == "d"


# -- named conditions, labels, pending ---------------------------------------------------------------
def test_a_named_conditions_evidence_holds_the_names_it_reads():
    res = engine().score(telemetry([("a", 0, 96), ("a", 1, 91)]), patients())
    ev = json.loads(res.episodes.filter(pl.col("rule_id") == "demo.low")["evidence"][0])
    assert list(ev) == ["hypoxic", "spo2", "spo2_low"]
    assert ev["hypoxic"]["value"] is True


def test_labels_reach_every_output(tmp_path):
    res = engine().score(telemetry([("a", 0, 96), ("a", 1, 91)]), patients())
    q = res.queue.filter(pl.col("rule_id") == "demo.low")
    assert json.loads(q["labels"][0]) == {"device": "oximeter", "domain": "respiratory"}
    pack = tmp_path / "demo.yaml"
    pack.write_text(PACK)
    tel, pats = tmp_path / "t.parquet", tmp_path / "p.parquet"
    telemetry([("a", 0, 96), ("a", 1, 91)]).write_parquet(tel)
    patients().write_parquet(pats)
    out = tmp_path / "q.jsonl"
    r = CliRunner().invoke(app, ["score", str(tel), "--patients", str(pats), "--rules",
                                 str(pack), "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"device": "oximeter", "domain": "respiratory"} in [row["labels"] for row in rows]


def test_a_site_adds_labels_to_a_rule():
    site = {"s.yaml": "site: s\npacks:\n  demo:\n    rules:\n"
                      "      demo.low: {labels: {team: pneumo, domain: lungs}}\n"}
    rule = next(r for r in engine(site).ruleset.rules if r.id == "demo.low")
    assert rule.labels == {"device": "oximeter", "domain": "lungs", "team": "pneumo"}


def test_pending_rules_are_in_the_result_with_what_they_wait_for():
    tel = telemetry([("a", 6.5, 90), ("a", 7.5, 90)])
    res = engine().score(tel, patients(tz=["Europe/Paris", None]))
    p = res.pending.filter(pl.col("rule_id") == "demo.morning_low")
    assert p.height == 1
    row = p.row(0, named=True)
    assert row["waiting_for"] == "for: 2h"
    assert row["condition_since"] == T0 + timedelta(hours=6.5)
    assert row["fires_at"] == T0 + timedelta(hours=8.5)
    assert json.loads(row["labels"]) == {"domain": "respiratory"}


def test_a_discharged_patient_has_nothing_pending():
    tel = telemetry([("a", 6.5, 90), ("a", 7.5, 90)])
    pats = patients(tz=["Europe/Paris", None],
                    discharged_at=[T0 + timedelta(hours=7), None])
    assert engine().score(tel, pats).pending.height == 0


# -- what pack tests assert -----------------------------------------------------------------------
def test_expected_evidence_must_name_the_rules_evidence():
    bad = PACK + """tests:
  - name: t
    series: {spo2: [[0m, 91]]}
    expect:
      - {rule: demo.low, at: 0m, evidence: {heart_rate: 80}}
    values:
      - {at: 0m, name: nope, value: 1}
"""
    with pytest.raises(RuleError) as err:
        load_rules_text({"demo.yaml": bad})
    text = str(err.value)
    assert "the evidence of 'demo.low' has no 'heart_rate'" in text
    assert "Its evidence: hypoxic, spo2, spo2_low." in text     # resolve_when's names are not
    assert "unknown name 'nope' in values" in text


def test_rules_test_name_selects_tests_and_an_unmatched_pattern_is_an_error():
    runner = CliRunner()
    r = runner.invoke(app, ["rules", "test", "rules/copd.yaml", "--name", "*hysteresis*", "-v"])
    assert r.exit_code == 2 and "no test name matches" in r.output
    r = runner.invoke(app, ["rules", "test", "rules/copd.yaml", "--name", "PRESCRIBED", "-v"])
    assert r.exit_code == 0, r.output
    assert r.output.count("PASS") == 3 and "3 passed, 0 failed" in r.output


# -- the local clock against polars' zone-aware fields -----------------------------------------------
ZONES = ["Europe/Paris", "America/St_Johns", "Asia/Kolkata", "Australia/Lord_Howe",
         "Pacific/Chatham", "UTC", "America/Sao_Paulo"]


@given(st.lists(st.tuples(st.integers(946_684_800_000_000, 1_924_992_000_000_000),
                          st.integers(0, len(ZONES) - 1)), min_size=1, max_size=60),
       st.lists(st.sampled_from(ZONES), min_size=len(ZONES), max_size=len(ZONES)))
@settings(max_examples=150, deadline=None)
def test_local_clock_matches_polars_zone_aware_fields(rows, zones):
    """Hour of day and ISO day of week from hourly UTC offsets (exact within the hours where
    the offset changes, Newfoundland's 00:01 changes included) equal a per-row conversion."""
    import numpy as np

    from engine.timeline import _local_clock

    ts = np.asarray([t for t, _ in rows], np.int64)
    patient = np.asarray([p for _, p in rows], np.int32)
    hour, dow = _local_clock(ts, patient, zones)
    for i, (t, p) in enumerate(rows):
        local = (pl.Series([t]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
                 .dt.convert_time_zone(zones[p]))
        want = local.dt.hour()[0] + local.dt.minute()[0] / 60 + local.dt.second()[0] / 3600
        assert hour[i] == pytest.approx(want, abs=1e-12), (t, zones[p])
        assert dow[i] == local.dt.weekday()[0]


def test_local_clock_across_newfoundlands_odd_minute_change():
    import numpy as np

    from engine.timeline import _local_clock

    # the clocks went from 00:01 NST (UTC-3:30) to 01:01 NDT (UTC-2:30) at 03:31 UTC on
    # 2000-04-02: 03:30 UTC is 00:00 local, 03:32 UTC is 01:02 local
    before, after = 954_646_200_000_000, 954_646_320_000_000
    hour, _ = _local_clock(np.asarray([before, after]), np.zeros(2, np.int32),
                           ["America/St_Johns"])
    assert hour.tolist() == pytest.approx([0.0, 1 + 2 / 60])
