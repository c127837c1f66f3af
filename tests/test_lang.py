"""Alerts in French by default, in English with ``lang="en"`` (rules/README.md, "Languages").

Every shipped rule has a French and an English title and reason with the same placeholders; a
run in French and a run in English give the same alerts (ids, times, evidence, order) and only
their titles and reasons differ; numbers read with a decimal comma and a non-breaking space
before the unit in French, and exactly as before in English.
"""
from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

import engine
from engine.errors import InputError, RuleError
from engine.ruleset import load_rules, load_rules_text
from engine.ruleset.evidence import NBSP, format_value, parse_template
from engine.ruleset.i18n import DEFAULT_LANG, LANGS
from engine.synth import generate_cohort

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"


def names(template: str) -> set[str]:
    return {n for _, n in parse_template(template)[0] if n is not None}


# ------------------------------------------------------------------------------------------
# the shipped packs are written in both languages
# ------------------------------------------------------------------------------------------
def test_every_shipped_rule_has_a_french_and_an_english_title_and_reason():
    rs = load_rules(RULES)
    assert rs.rules
    for rule in rs.rules:
        assert set(rule.titles) == set(LANGS), rule.id
        assert set(rule.reasons) == set(LANGS), rule.id
        assert all(t.strip() for t in (*rule.titles.values(), *rule.reasons.values())), rule.id
        assert names(rule.reasons["fr"]) == names(rule.reasons["en"]), rule.id
        assert rule.titles["fr"] != rule.titles["en"], rule.id
        # the English text is what the rule's plain fields hold (and always held)
        assert (rule.title, rule.reason) == (rule.titles["en"], rule.reasons["en"])


def test_the_library_and_the_command_line_default_to_french():
    assert DEFAULT_LANG == "fr"
    assert engine.Engine.from_paths([RULES / "heart_failure.yaml"]).lang == "fr"


def test_an_unknown_language_is_refused():
    with pytest.raises(InputError, match="unknown language 'de'"):
        engine.Engine.from_paths([RULES / "heart_failure.yaml"], lang="de")


# ------------------------------------------------------------------------------------------
# French and English runs of one cohort: same alerts, other words
# ------------------------------------------------------------------------------------------
TEXT = ["title", "reason"]


@pytest.fixture(scope="module")
def queues():
    cohort = generate_cohort(60, days=21, seed=4)
    out = {}
    for lang in LANGS:
        eng = engine.Engine.from_paths(lang=lang)
        out[lang] = eng.score(cohort.telemetry, cohort.patients)
    return out


def test_french_and_english_runs_give_the_same_alerts(queues):
    fr, en = queues["fr"].queue, queues["en"].queue
    assert fr.height == en.height > 20
    assert fr["rule_id"].n_unique() >= 10
    assert_frame_equal(fr.drop(TEXT), en.drop(TEXT))
    assert_frame_equal(queues["fr"].episodes.drop(TEXT), queues["en"].episodes.drop(TEXT))
    assert_frame_equal(queues["fr"].pending.drop(TEXT), queues["en"].pending.drop(TEXT))
    # every title and reason differs between the languages
    assert (fr["title"] != en["title"]).all()
    assert (fr["reason"] != en["reason"]).all()


def test_the_default_run_is_the_french_one(queues):
    cohort = generate_cohort(60, days=21, seed=4)
    default = engine.Engine.from_paths().score(cohort.telemetry, cohort.patients).queue
    assert_frame_equal(default, queues["fr"].queue)


def test_french_reasons_use_decimal_commas_and_no_english(queues):
    q = queues["fr"].queue
    reasons = q["reason"].to_list()
    # a decimal number is written with a comma, never with a point
    assert any(re.search(r"\d,\d", r) for r in reasons)
    assert not any(re.search(r"\d\.\d", r) for r in reasons), \
        [r for r in reasons if re.search(r"\d\.\d", r)][:3]
    # a value and its unit are held together by a non-breaking space
    assert any(f"{NBSP}%" in r for r in reasons)
    assert not any(re.search(r"\d%", r) for r in reasons)
    english = re.compile(r"\b(Weight|received|above|below|usual|alert|unknown|yes|no|the|"
                         r"of|for|days?|hours?|Respiration|Pulse|Glucose|still|later)\b")
    for rule in ("copd.spo2_below_target", "covid_home.resp_rate_rise", "silence.hf_weight",
                 "silence.covid_spo2", "diabetes.hypo_level2", "hf.weight_gain_2kg_3d"):
        rows = q.filter(pl.col("rule_id") == rule)
        assert rows.height, f"{rule} does not fire on this cohort"
        for text in rows["reason"].to_list() + rows["title"].to_list():
            assert not english.search(text), (rule, text)
            # durations read in French ("2 j 4 h", "4 h"), never "2d4h" or "4h"
            assert not re.search(r"\d+[dhmw]\b", text), (rule, text)


def test_english_reasons_are_as_they_were(queues):
    en = queues["en"].queue
    gain = en.filter(pl.col("rule_id") == "hf.weight_gain_2kg_3d")["reason"].to_list()
    assert gain and all(re.fullmatch(r"Weight up \d+(\.\d+)? kg in 3 days \(alert above "
                                     r"\d+(\.\d+)? kg\): possible fluid retention\.", r)
                        for r in gain), gain
    assert not any(NBSP in r for r in en["reason"].to_list())


# ------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,unit,text", [
    (2.6, "kg", "2,6 kg"),
    (37.8, "°C", "37,8 °C"),
    (-10.04, "%", "-10,04 %"),
    (90, "%", "90 %"),
    (69.995, "%", "69,995 %"),
    (81.19985, "kg", "81,2 kg"),
    (90, "min", "1 h 30 min"),
    (2.5, "d", "2 j 12 h"),
    (14, "d", "2 sem"),
    (30, "d", "30 j"),
    (0.27, "min", "16,2 s"),
    (1413.667, "/d", "1413,667 /j"),
    (2, "kg/w", "2 kg/sem"),
    (72, "/min", "72 /min"),
    (-3, "d", "-3 j"),
    (7, "", "7"),
    (True, "", "oui"),
    (False, "", "non"),
    (None, "kg", "inconnu"),
    (float("nan"), "%", "inconnu"),
    ("high", "", "high"),
])
def test_french_values(value, unit, text):
    assert format_value(value, unit, "fr") == text.replace(" ", NBSP)


@pytest.mark.parametrize("value,unit,text", [
    (2.6, "kg", "2.6 kg"), (-10.04, "%", "-10.04%"), (90, "min", "1h30m"),
    (True, "", "yes"), (None, "kg", "unknown"), (2, "kg/w", "2 kg/w"),
])
def test_english_values_are_unchanged(value, unit, text):
    assert format_value(value, unit) == format_value(value, unit, "en") == text


# ------------------------------------------------------------------------------------------
# user packs: a plain text is English, a mapping may give one language or both
# ------------------------------------------------------------------------------------------
def pack(rule: str, tests: str = "") -> str:
    return f"""
pack: p
version: "1"
scope: {{cohort: heart_failure}}
detectors:
  gain: {{metric: weight, fn: delta, window: 3d}}
params:
  limit: 2 kg
rules:
{rule}
{tests}"""


def telemetry() -> pl.DataFrame:
    from datetime import datetime, timezone
    day = [datetime(2026, 1, d, 8, tzinfo=timezone.utc) for d in (1, 2, 4)]
    return pl.DataFrame({"patient_id": ["a"] * 3, "ts": day, "metric": ["weight"] * 3,
                         "value": [80.0, 80.8, 82.5]})


PATIENTS = pl.DataFrame({"patient_id": ["a"], "programme": ["heart_failure"]})


def alert(text: str, lang: str) -> tuple[str, str]:
    eps = load_rules_text({"p.yaml": text}).evaluate(telemetry(), PATIENTS, lang=lang)
    assert eps.height == 1
    return eps["title"][0], eps["reason"][0]


def test_a_plain_english_pack_reads_english_in_a_french_run():
    text = pack("""  - id: p.gain
    title: Weight gain
    when: gain > limit
    severity: high
    reason: "Up {gain} in 3 days (limit {limit})."
""")
    want = ("Weight gain", "Up 2.5 kg in 3 days (limit 2 kg).")
    assert alert(text, "fr") == alert(text, "en") == want


def test_a_french_only_pack_reads_french_in_an_english_run():
    text = pack("""  - id: p.gain
    title: {fr: Prise de poids}
    when: gain > limit
    severity: high
    reason: {fr: "Poids +{gain} en 3 jours (limite {limit})."}
""")
    want = ("Prise de poids", f"Poids +2,5{NBSP}kg en 3 jours (limite 2{NBSP}kg).")
    assert alert(text, "en") == alert(text, "fr") == want


def test_a_rule_without_a_reason_reads_its_title_and_values_in_the_title_language():
    text = pack("""  - id: p.gain
    title: {fr: Prise de poids, en: Weight gain}
    when: gain > limit
    severity: high
""")
    assert alert(text, "en") == ("Weight gain", "Weight gain: gain 2.5 kg (limit 2 kg).")
    assert alert(text, "fr") == ("Prise de poids", f"Prise de poids{NBSP}: gain 2,5{NBSP}kg "
                                                   f"(limit 2{NBSP}kg).")


def test_a_title_and_a_reason_may_each_have_their_own_languages():
    text = pack("""  - id: p.gain
    title: Weight gain
    when: gain > limit
    severity: high
    reason: {fr: "Poids +{gain}.", en: "Weight +{gain}."}
""")
    assert alert(text, "fr") == ("Weight gain", f"Poids +2,5{NBSP}kg.")
    assert alert(text, "en") == ("Weight gain", "Weight +2.5 kg.")


def test_both_languages_must_use_the_same_placeholders():
    text = pack("""  - id: p.gain
    title: Weight gain
    when: gain > limit
    severity: high
    reason:
      fr: "Poids +{gain}."
      en: "Weight +{gain} (limit {limit})."
""")
    with pytest.raises(RuleError) as err:
        load_rules_text({"p.yaml": text})
    (d,) = err.value.errors
    assert (d.line, d.col) == (15, 11)
    assert "`reason.fr` does not use {limit}, which `reason.en` uses" in str(d)


def test_a_translation_may_reorder_and_repeat_placeholders():
    text = pack("""  - id: p.gain
    title: Weight gain
    when: gain > limit
    severity: high
    reason:
      en: "Weight +{gain} (limit {limit})."
      fr: "Limite {limit} dépassée : {gain}, soit +{gain}."
""")
    assert alert(text, "fr")[1] == (f"Limite 2{NBSP}kg dépassée : 2,5{NBSP}kg, soit "
                                    f"+2,5{NBSP}kg.")


def test_only_french_and_english_keys():
    text = pack("""  - id: p.gain
    title: {en: Weight gain, es: Aumento de peso}
    when: gain > limit
    severity: high
""")
    with pytest.raises(RuleError) as err:
        load_rules_text({"p.yaml": text})
    (d,) = err.value.errors
    assert (d.line, d.col) == (11, 30)
    assert "unknown key 'es' in rules[0].title. Known keys: en, fr." in str(d)


# ------------------------------------------------------------------------------------------
# pack tests choose their language
# ------------------------------------------------------------------------------------------
RULE = """  - id: p.gain
    title: {fr: Prise de poids, en: Weight gain}
    when: gain > limit
    severity: high
    reason: {fr: "Poids +{gain} en 3 jours.", en: "Weight up {gain} in 3 days."}
"""


def run_tests(tests: str):
    return load_rules_text({"p.yaml": pack(RULE, tests)}).run_tests()


def test_pack_tests_read_english_unless_they_say_lang_fr():
    report = run_tests("""tests:
  - name: english by default
    series: {weight: [[0d, 80.0], [3d, 82.5]]}
    expect: [{rule: p.gain, at: 3d, reason: "Weight up 2.5 kg in 3 days."}]
  - name: french when asked
    lang: fr
    series: {weight: [[0d, 80.0], [3d, 82.5]]}
    expect: [{rule: p.gain, at: 3d, reason: "Poids +2,5 kg en 3 jours."}]
""")
    assert report.passed, report.render()
    assert [r.case.lang for r in report.results] == ["en", "fr"]


def test_a_failing_french_pack_test_shows_the_exact_text():
    report = run_tests("""tests:
  - name: french, wrong
    lang: fr
    series: {weight: [[0d, 80.0], [3d, 82.5]]}
    expect: [{rule: p.gain, at: 3d, reason: "Poids +2.5 kg en 3 jours."}]
""")
    assert not report.passed
    text = report.render()
    assert "FAIL  p [fr]: french, wrong" in text
    assert "expected 'Poids +2.5 kg en 3 jours.', got 'Poids +2,5\\xa0kg en 3 jours.'" in text


def test_a_pack_test_language_is_fr_or_en():
    with pytest.raises(RuleError, match=r"'tests\[0\]\.lang' must be 'fr' or 'en'"):
        run_tests("""tests:
  - name: german
    lang: de
    series: {weight: [[0d, 80.0], [3d, 82.5]]}
    expect: []
""")


# ------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------
def test_score_lang_option(tmp_path):
    from cli import app

    cohort = generate_cohort(12, days=10, seed=4)
    tel, pats = tmp_path / "t.parquet", tmp_path / "p.parquet"
    cohort.telemetry.write_parquet(tel)
    cohort.patients.write_parquet(pats)
    runner = CliRunner()
    out = {}
    for args in ([], ["--lang", "fr"], ["--lang", "en"]):
        q = tmp_path / f"q{len(out)}.parquet"
        r = runner.invoke(app, ["score", str(tel), "--patients", str(pats), "--model", "none",
                                "--out", str(q), *args])
        assert r.exit_code == 0, r.output
        out[tuple(args)] = pl.read_parquet(q)
    default, fr, en = out.values()
    assert default.height > 0
    assert_frame_equal(default, fr)
    assert_frame_equal(fr.drop(TEXT), en.drop(TEXT))
    assert (fr["reason"] != en["reason"]).all()
    r = runner.invoke(app, ["score", str(tel), "--patients", str(pats), "--lang", "de",
                            "--out", str(tmp_path / "q.parquet")])
    assert r.exit_code == 2 and "unknown language 'de'" in r.output
    assert not (tmp_path / "q.parquet").exists()


def test_explain_shows_both_texts():
    rs = load_rules(RULES)
    text = rs.explain("hf.weight_gain_2kg_3d")
    assert text.startswith("hf.weight_gain_2kg_3d — Weight gain over 2 kg in 3 days\n")
    assert "  title      en: Weight gain over 2 kg in 3 days\n" \
           "             fr: Prise de poids de plus de 2 kg en 3 jours\n" in text
    assert "  reason     en: Weight up {weight_gain_3d} in 3 days" in text
    assert "             fr: Poids +{weight_gain_3d} en 3 jours" in text
