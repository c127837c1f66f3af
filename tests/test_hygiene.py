"""Alert hygiene (engine/hygiene.py): the queue tests written as data, the rule files'
inhibit: key, silences in the store and in a file, directional snoozes, re-raise, and on the
sample cohort: the burden with hygiene on and off with no labelled event lost."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli import app
from engine import hygiene as H
from engine.errors import InputError, RuleError
from engine.queue import QUEUE_COLUMNS, build_queue
from engine.queuetest import run_files

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.timezone.utc


def t(day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, tzinfo=UTC)


def episodes(*rows) -> pl.DataFrame:
    from engine.episodes import EPISODE_COLUMNS

    return pl.DataFrame([{"patient_id": p, "rule_id": r, "pack": r.split(".")[0],
                          "severity": s, "title": r, "opened_at": o, "condition_since": o,
                          "last_seen_at": o, "resolved_at": z, "evidence": "{}",
                          "reason": r, "labels": "{}"} for p, r, s, o, z in rows],
                        schema=EPISODE_COLUMNS)


def test_queue_tests_pass():
    report = run_files([ROOT / "tests" / "queue_tests" / "hygiene.yaml"])
    assert report.failed == 0, "\n".join(report.failures)
    assert report.passed >= 10


def test_queue_test_failure_names_file_and_line(tmp_path):
    f = tmp_path / "q.yaml"
    f.write_text("tests:\n  - name: wrong\n    as_of: 2026-01-05T12:00:00Z\n    alerts:\n"
                 "      - {id: a, patient: P1, rule: x.y, pack: x, severity: high,\n"
                 "         opened: 2026-01-05T09:00:00Z}\n"
                 "    expect:\n      - {alert: a, suppressed_by: flapping}\n")
    r = CliRunner().invoke(app, ["queue", "test", str(f)])
    assert r.exit_code == 1
    assert f"{f}:8: test 'wrong': alert 'a': suppressed_by expected 'flapping', got None" \
        in r.output.replace("\n", " ").replace("  ", " ") or "suppressed_by expected" in r.output


def test_queue_test_bad_file_is_located(tmp_path):
    f = tmp_path / "q.yaml"
    f.write_text("tests:\n  - name: x\n    as_of: yesterday\n    alerts: []\n")
    r = CliRunner().invoke(app, ["queue", "test", str(f)])
    assert r.exit_code == 2
    assert f"{f}:3:12: 'as_of' must be a time with its zone" in r.output


def test_inhibit_key_is_checked_with_file_line_col():
    from engine.ruleset.ruleset import load_rules_text

    pack = (ROOT / "rules" / "news2.yaml").read_text()
    bad = pack.replace("source: {rules: [news2.high]}", "source: {rules: [news2.hihg]}") \
        .replace("labels: {device: oximeter}}", "labels: {devise: oximeter}}")
    with pytest.raises(RuleError) as exc:
        load_rules_text({"news2.yaml": bad})
    text = str(exc.value)
    assert "inhibit[0].source: unknown rule 'news2.hihg'. Did you mean 'news2.high'" in text
    assert "inhibit[0].target: no loaded rule carries label 'devise'" in text
    assert all(line.startswith("news2.yaml:") for line in text.splitlines()[1:])


def test_shipped_inhibitions():
    from engine.ruleset import load_rules

    rs = load_rules(ROOT / "rules")
    got = {(i.pack, tuple(sorted(i.source.rules))) for i in rs.inhibitions}
    assert ("news2", ("news2.high",)) in got
    assert ("device_silence", ("silence.copd_spo2", "silence.covid_spo2")) in got
    assert H.silence_rule_ids(rs) >= {"silence.cgm", "silence.copd_spo2", "silence.any_device"}


def test_nothing_dropped_and_off_is_today():
    q = build_queue(episodes(("P1", "copd.a", "low", t(10, 10), None),
                             ("P1", "copd.b", "high", t(10, 11), None),
                             ("P2", "copd.a", "low", t(5, 10), t(5, 12))))
    out, rep = H.apply(q, as_of=t(10, 12))
    assert out.height == q.height and set(out["alert_id"]) == set(q["alert_id"])
    assert out.schema == pl.Schema({**QUEUE_COLUMNS, **H.HYGIENE_COLUMNS})
    assert rep.open["held_until"] == 1 and rep.shown_open == 1
    held = out.filter(pl.col("rule_id") == "copd.a", pl.col("patient_id") == "P1")
    assert held["priority"][0] is None and held["status"][0] == "open"


def test_silences_file(tmp_path):
    from engine.silences import load_silences

    f = tmp_path / "s.yaml"
    f.write_text("silences:\n- {id: h, patients: [P1], author: MD, reason: hospital stay,\n"
                 "   ends: 2026-01-20T00:00:00Z}\n- {patients: [P2], reason: x}\n")
    with pytest.raises(InputError) as exc:
        load_silences(f)
    assert "s.yaml:4:3: a silence needs 'author'" in str(exc.value)
    assert "s.yaml:4:3: a silence needs 'ends'" in str(exc.value)
    f.write_text("silences:\n- {id: h, patients: [P1], author: MD, reason: hospital stay,\n"
                 "   ends: 2026-01-20T00:00:00Z}\n")
    (s,) = load_silences(f)
    assert s.id == "h" and s.patients == frozenset({"P1"})


def _run(rows, as_of):
    from engine.pipeline import Result
    from engine.ingest import Reconciliation

    q, rep = H.apply(build_queue(episodes(*rows)), as_of=as_of)
    rec = Reconciliation(source="t", rows_in=1, rows_used=1, rows_quarantined=0,
                         duplicates_collapsed=0)
    return Result(clean=pl.DataFrame(), quarantine=pl.DataFrame({"reason": []}), report=rec,
                  patients=None, episodes=pl.DataFrame(), queue=q, as_of=as_of, hygiene=rep)


def test_store_silence_snooze_and_reraise(tmp_path):
    from engine import store as S

    path = tmp_path / "q.duckdb"
    rows = [("P1", "diabetes.hyper_extended", "medium", t(7, 8), None),
            ("P1", "diabetes.hypo_level2", "high", t(7, 9), None),
            ("P2", "hf.weight_gain_2kg_3d", "high", t(7, 9), None)]
    S.write_run(path, _run(rows, t(7, 10)), reraise_after=dt.timedelta(hours=4))
    ids = dict(zip(zip(*[S.open_queue(path, status="all")[c] for c in ("patient_id",
                                                                        "rule_id")]),
                   S.open_queue(path, status="all")["alert_id"]))
    now = dt.datetime.now(UTC)
    # a snooze of glucose high covers that rule only: glucose low stays in the queue
    S.act(path, ids[("P1", "diabetes.hyper_extended")], "snooze", by="MD",
          until=now + dt.timedelta(days=1))
    later = rows + [("P1", "diabetes.hyper_extended", "medium", t(7, 12), None)]
    S.write_run(path, _run(later, t(7, 14)), reraise_after=dt.timedelta(hours=4))
    shown = S.open_queue(path)
    assert ("P1", "diabetes.hyper_extended") not in set(zip(shown["patient_id"],
                                                            shown["rule_id"]))
    assert ("P1", "diabetes.hypo_level2") in set(zip(shown["patient_id"], shown["rule_id"]))
    # the unacknowledged high alerts waited 5 h: re-raised, first in the queue
    trail = S.history(path, ids[("P2", "hf.weight_gain_2kg_3d")])
    assert "re-raised" in trail["event"].to_list()
    assert shown["reraise_count"][0] == 1
    listed = CliRunner().invoke(app, ["queue", "list", "--store", str(path)],
                                env={"COLUMNS": "250"})
    # marked beside the workflow (the start of the mark: a narrow console truncates the cell)
    assert listed.exit_code == 0 and listed.output.count("re-rai") == 2, listed.output
    # a silence added by hand hides at once, is listed, and stops applying when expired
    sid = S.add_silence(path, by="MD", reason="hospital stay", patients=["P2"],
                        ends_at=now + dt.timedelta(days=3))
    assert "P2" not in S.open_queue(path)["patient_id"].to_list()
    assert S.list_silences(path)["silence_id"].to_list() == [sid]
    S.expire_silence(path, sid, by="MD")
    assert "P2" in S.open_queue(path)["patient_id"].to_list()
    assert S.list_silences(path).height == 0
    with pytest.raises(InputError, match="must match something"):
        S.add_silence(path, by="MD", reason="x", ends_at=now + dt.timedelta(days=1))


def test_queue_silence_cli(tmp_path):
    from engine import store as S

    path = tmp_path / "q.duckdb"
    S.write_run(path, _run([("P1", "hf.weight_gain_2kg_3d", "high", t(7, 9), None)], t(7, 10)))
    r = CliRunner().invoke(app, ["queue", "silence", "add", "--store", str(path), "--by", "MD",
                                 "--reason", "hospital stay", "--patient", "P1",
                                 "--until", "2099-01-01T00:00Z"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["queue", "silence", "list", "--store", str(path)])
    assert r.exit_code == 0 and "1 silence(s)" in r.output
    r = CliRunner().invoke(app, ["queue", "list", "--store", str(path), "--group", "patient"])
    assert r.exit_code == 0 and "0 alert(s)" in r.output


@pytest.mark.slow
def test_sample_burden_no_labelled_event_lost():
    import engine
    from engine.backtest import hygiene_effect, load_events

    cohort = ROOT / "data_samples" / "cohort"
    eng = engine.Engine.from_paths(hygiene=H.HygieneConfig())
    res = eng.score(str(cohort / "telemetry.parquet"), str(cohort / "patients.parquet"))
    events, _ = load_events(str(cohort / "events.parquet"))
    e = hygiene_effect(res.queue, events, res.clean, res.patients)
    assert e["on"] < e["off"]
    assert e["caught_on"] == e["caught_off"], e["lost"]
    # off: exactly the queue without the stage
    off = engine.Engine.from_paths().score(str(cohort / "telemetry.parquet"),
                                           str(cohort / "patients.parquet")).queue
    assert off.height == res.queue.height
    assert off.schema == pl.Schema(QUEUE_COLUMNS)


def _reference_flapping(rows, n, window):
    """The flapping chains alert by alert, as the first version computed them (a list per
    (patient, rule), sorted by opening, chains cut at gaps over the window)."""
    from collections import defaultdict

    out = {}
    series = defaultdict(list)
    for i, a in enumerate(rows):
        series[(a["patient_id"], a["rule_id"])].append({**a, "_i": i})
    for alerts in series.values():
        alerts.sort(key=lambda a: a["opened_at"])
        chain = [alerts[0]]
        for a in alerts[1:] + [None]:
            if a is not None and a["opened_at"] - chain[-1]["opened_at"] <= window:
                chain.append(a)
                continue
            opens = [c["opened_at"] for c in chain]
            if any(opens[k + n - 1] - opens[k] <= window for k in range(len(opens) - n + 1)):
                for c in chain:
                    out[c["_i"]] = (chain[-1]["_i"], len(chain))
            chain = [a]
    return out


@pytest.mark.parametrize("seed", range(30))
def test_flapping_chains_match_the_alert_by_alert_reference(seed):
    import random

    rng = random.Random(seed)
    n = rng.choice([2, 3, 4])
    window = dt.timedelta(hours=rng.choice([1, 6, 72]))
    rows = [{"patient_id": rng.choice(["a", "b"]), "rule_id": rng.choice(["r.x", "r.y"]),
             # whole hours over four days: ties, gaps at and just over the window
             "opened_at": t(1) + dt.timedelta(hours=rng.randrange(96),
                                              microseconds=rng.choice([0, 0, 1]))}
            for _ in range(rng.randrange(1, 60))]
    queue = pl.DataFrame(rows, schema={"patient_id": pl.String, "rule_id": pl.String,
                                       "opened_at": pl.Datetime("us", "UTC")})
    config = H.HygieneConfig(flap_openings=n, flap_window=window)
    assert H._flapping(queue, config) == _reference_flapping(rows, n, window)
