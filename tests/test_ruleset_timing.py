"""Timing keys at their exact boundaries: one duration grammar everywhere (compound durations
like ``2d12h`` in params, bounds, ``when`` and every duration key), ``resolve_after`` across
unknown times, and ``confirm_readings`` (fresh readings, not values carried forward)."""
from __future__ import annotations

import json

import pytest

from engine.errors import RuleError
from engine.ruleset import load_rules_text
from tests.test_ruleset_semantics import (MIN, T0, at, episodes, opened, pack, patients,
                                          series, spo2_rule, telemetry)

HOUR = 60 * MIN


# ------------------------------------------------------------------------------------------
# compound durations: accepted everywhere a duration is, with the same meaning
# ------------------------------------------------------------------------------------------
DURATION_PACK = """
pack: p
version: "1"
scope: {{cohort: copd}}
evaluate_every: {every}
defaults: {{staleness: {stale}}}
detectors:
  low: {{metric: spo2, fn: min, window: {window}, staleness: {det_stale}}}
params:
  span: {param}
rules:
  - id: p.low
    title: Low
    when: low < 92 and spo2 > 0
    severity: high
    for: {for_}
    cooldown: {cooldown}
    resolve_after: {resolve}
"""


def _compiled(**keys):
    rs = load_rules_text({"p.yaml": DURATION_PACK.format(**keys)})
    [p] = rs.packs
    return p, p.rules[0]


@pytest.mark.parametrize("key", ["every", "stale", "window", "det_stale", "for_", "cooldown",
                                 "resolve"])
def test_a_compound_duration_means_the_same_literal_or_through_a_param(key):
    plain = dict(every="1h", stale="12h", window="6h", det_stale="2h", for_="0m",
                 cooldown="0m", resolve="0m", param="1 h")
    literal = _compiled(**{**plain, key: "1h30m"})
    via_param = _compiled(**{**plain, key: "span", "param": "1h30m"})
    spelled = _compiled(**{**plain, key: "span", "param": "90 min"})
    got = []
    for p, r in (literal, via_param, spelled):
        d = p.detectors["low"]
        got.append({"every": p.evaluate_every_us, "stale": p.staleness_us.get("spo2"),
                    "window": d.spec["window"], "det_stale": d.staleness_us,
                    "for_": r.for_us, "cooldown": r.cooldown_us,
                    "resolve": r.resolve_after_us}[key])
    expected = "1h30m" if key == "window" else 90 * MIN
    assert got == [expected] * 3


def test_compound_duration_params_and_their_bounds():
    text = pack(spo2_rule("    for: confirm"),
                params="confirm: {value: 2d12h, min: 1d12h, max: 1w2d}, half: confirm / 2")
    rs = load_rules_text({"p.yaml": text})
    params = rs.packs[0].params
    assert (params["confirm"].value, params["confirm"].unit) == (60.0, "h")
    assert params["confirm"].display() == "2d12h" and params["confirm"].text == "2d12h"
    assert params["half"].display() == "1d6h"
    assert rs.rules[0].for_us == 60 * HOUR
    site = "site: s\npacks:\n  p:\n    params: {confirm: 1w3d}\n"
    with pytest.raises(RuleError) as info:
        load_rules_text({"p.yaml": text}, {"s.yaml": site})
    assert "s.yaml:4:23: param 'confirm' = 10d is above its maximum 9d (set by the pack at " \
           "p.yaml:7:51)" in str(info.value)
    ok = load_rules_text({"p.yaml": text}, {"s.yaml": site.replace("1w3d", "1d12h")})
    assert ok.rules[0].for_us == 36 * HOUR


def test_a_compound_duration_in_when_and_in_evidence():
    det = "quiet: {fn: silence_at, metric: spo2}"
    rule = spo2_rule(when="quiet > 1h30m")
    text = pack(rule, detectors=det, head="evaluate_every: 30m")
    eps = episodes(text, [("a", "spo2", 0, 95)], until=at(240))
    assert opened(eps) == [120.0]                 # 90 min is not more than 1h30m; 120 is
    eps = episodes(pack(spo2_rule(when="quiet >= 1h30m"), detectors=det,
                        head="evaluate_every: 30m"), [("a", "spo2", 0, 95)], until=at(240))
    assert opened(eps) == [90.0]
    assert json.loads(eps["evidence"][0]) == {"quiet": {"value": 90.0, "unit": "min"}}


def test_compound_offsets_in_a_pack_test():
    text = pack(spo2_rule("    for: 1h30m")) + """
tests:
  - name: compound offsets
    series: {spo2: [[0m, 90], [1h30m, 90], [1d12h, 90]]}
    until: 2d12h
    expect: [{rule: p.low, at: 1h30m, resolved: open}]
"""
    report = load_rules_text({"p.yaml": text}).run_tests()
    assert report.passed, report.render()


# ------------------------------------------------------------------------------------------
# resolve_after across unknown times: skipped, neither resolving nor restarting the count
# ------------------------------------------------------------------------------------------
def _with_unknowns(resolve: str, spo2, unknown_at, *, on_missing=None):
    """`spo2 < 92` on a timeline that also has heart rate times; SpO2 counts for 5 minutes, so
    a time with only a heart rate reading is unknown for the rule."""
    extra = f"    resolve_after: {resolve}" + (f"\n    on_missing: {on_missing}"
                                                 if on_missing else "")
    hr_rule = '\n  - {id: p.hr, title: HR, when: "heart_rate > 250", severity: low}\n'
    text = pack(spo2_rule(extra) + hr_rule, head="defaults: {staleness: 5m}")
    rows = [("a", "spo2", t, v) for t, v in spo2] + [("a", "heart_rate", t, 80)
                                                     for t in unknown_at]
    eps = episodes(text, rows)
    return eps.filter(eps["rule_id"] == "p.low")


def test_an_unknown_time_does_not_restart_the_resolve_count():
    # opens at 0; false at 10, unknown at 20, false at 30: 20 min of known-false span
    eps = _with_unknowns("20m", [(0, 90), (10, 95), (30, 95)], [20])
    assert opened(eps) == [0.0] and eps["resolved_at"].to_list() == [at(30)]


def test_resolve_after_with_an_unknown_is_exact_at_the_boundary():
    eps = _with_unknowns("20m", [(0, 90), (10, 95), (29, 95)], [20])
    assert eps["resolved_at"].to_list() == [None]          # 19 min: still open
    eps = _with_unknowns("20m", [(0, 90), (10, 95), (29, 95), (30, 95)], [20])
    assert eps["resolved_at"].to_list() == [at(30)]


def test_unknown_times_alone_never_resolve():
    eps = _with_unknowns("0m", [(0, 90)], [10, 20, 600, 6000])
    assert opened(eps) == [0.0] and eps["resolved_at"].to_list() == [None]
    # nor do they count as false before the first known-false time
    eps = _with_unknowns("20m", [(0, 90), (25, 95)], [10, 20])
    assert eps["resolved_at"].to_list() == [None]


def test_a_time_that_holds_restarts_the_count_across_unknowns():
    # false 10, unknown 20, holds 25, false 30 (count restarts), unknown 40, false 49, 50
    eps = _with_unknowns("20m", [(0, 90), (10, 95), (25, 90), (30, 95), (49, 95), (50, 95)],
                         [20, 40])
    assert opened(eps) == [0.0]
    assert eps["resolved_at"].to_list() == [at(50)]
    assert eps["last_seen_at"].to_list() == [at(25)]


def test_routinely_incomplete_readings_let_an_episode_resolve():
    # every other spot check lacks the reading: false / unknown / false ... every 4 h
    spo2 = [(0, 90)] + [(h * 60, 95) for h in range(4, 48, 8)]
    unknown = [h * 60 for h in range(8, 48, 8)]
    eps = _with_unknowns("12h", spo2, unknown)
    assert eps["resolved_at"].to_list() == [at(20 * 60)]   # false since 4 h: 16 h >= 12 h


def test_on_missing_true_holds_at_an_unknown_time_and_restarts_the_count():
    eps = _with_unknowns("20m", [(0, 90), (10, 95), (30, 95), (50, 95)], [20],
                         on_missing="true")
    assert eps["resolved_at"].to_list() == [at(50)]        # the null at 20 held
    assert eps["last_seen_at"].to_list() == [at(20)]


# ------------------------------------------------------------------------------------------
# confirm_readings: N fresh readings within the `for:` run
# ------------------------------------------------------------------------------------------
HR_RULE = '\n  - {id: p.hr, title: HR, when: "heart_rate > 250", severity: low}\n'


def _confirm(extra, rows, *, when="spo2 < 92", head="", until=None, params=""):
    text = pack(spo2_rule(extra, when=when) + HR_RULE, head=head, params=params)
    eps = episodes(text, rows, until=until)
    return eps.filter(eps["rule_id"] == "p.low")


def test_a_single_reading_carried_forward_no_longer_confirms_a_for_run():
    # one low SpO2 at 0, carried forward (6 h staleness) to heart-rate times every 30 min
    rows = [("a", "spo2", 0, 90)] + [("a", "heart_rate", t, 80) for t in range(30, 300, 30)]
    assert opened(_confirm("    for: 4h", rows)) == [240.0]          # today's behaviour
    assert opened(_confirm("    for: 4h\n    confirm_readings: 1", rows)) == [240.0]
    assert opened(_confirm("    for: 4h\n    confirm_readings: 2", rows)) == []
    # a second low reading (at 3 h) confirms it; the rule fires once `for` is met too
    eps = _confirm("    for: 4h\n    confirm_readings: 2", rows + [("a", "spo2", 180, 91)])
    assert opened(eps) == [240.0] and eps["condition_since"].to_list() == [T0]
    # ... or at the second reading when that comes after `for`
    eps = _confirm("    for: 4h\n    confirm_readings: 2", rows + [("a", "spo2", 285, 91)])
    assert opened(eps) == [285.0]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_n_minus_one_readings_do_not_fire_and_n_do(n):
    extra = f"    confirm_readings: {n}"
    assert opened(_confirm(extra, series([90] * (n - 1)))) == []
    eps = _confirm(extra, series([90] * n))
    assert opened(eps) == [10.0 * (n - 1)]
    assert eps["condition_since"].to_list() == [T0]


def test_the_count_restarts_with_the_run():
    # low, low, normal, low, low, low: the run restarts at 30; three readings at 50
    eps = _confirm("    confirm_readings: 3", series([90, 90, 95, 90, 90, 90]))
    assert opened(eps) == [50.0] and eps["condition_since"].to_list() == [at(30)]


def test_cadence_ticks_and_other_metrics_are_not_readings():
    rows = [("a", "spo2", 0, 90), ("a", "heart_rate", 10, 80)]
    extra = "    for: 30m\n    confirm_readings: 2"
    assert opened(_confirm(extra, rows, head="evaluate_every: 10m", until=at(120))) == []
    rows.append(("a", "spo2", 20, 91))
    eps = _confirm(extra, rows, head="evaluate_every: 10m", until=at(120))
    assert opened(eps) == [30.0]                   # two readings by 20, `for` met on the tick


def test_readings_of_any_metric_the_condition_reads_count_once_per_time():
    when = "spo2 < 92 and heart_rate > 60"
    extra = "    confirm_readings: 2"
    both_at_once = [("a", "spo2", 0, 90), ("a", "heart_rate", 0, 80)]
    assert opened(_confirm(extra, both_at_once, when=when)) == []
    then_hr = both_at_once + [("a", "heart_rate", 10, 82)]
    assert opened(_confirm(extra, then_hr, when=when)) == [10.0]


def test_the_metrics_a_condition_reads():
    det = "low: {metric: spo2, fn: min, window: 1h}, quiet: {fn: silence_at, metric: any}"
    text = pack(spo2_rule("    confirm_readings: 2", when="low < 92 and temp > 38")
                + "\n" + spo2_rule("    confirm_readings: 2", when="news2 >= 5")
                .replace("p.low", "p.news") + "\n"
                + spo2_rule("    confirm_readings: 2", when="quiet > 60 and age > 80")
                .replace("p.low", "p.quiet"), detectors=det)
    rs = load_rules_text({"p.yaml": text})
    got = {r.id: r.confirm_metrics for r in rs.rules}
    assert got["p.low"] == ("spo2", "temp")
    assert set(got["p.news"]) >= {"resp_rate", "spo2", "sbp", "heart_rate", "temp",
                                  "consciousness", "on_oxygen"}
    assert got["p.quiet"] is None                 # a silence over any metric reads them all


def test_confirm_readings_from_defaults_and_from_a_site_tunable_param():
    head = "defaults: {confirm_readings: confirm_n}"
    params = "confirm_n: {value: 2, min: 1, max: 3}"
    assert opened(_confirm("", series([90, 90, 90]), head=head, params=params)) == [10.0]
    assert opened(_confirm("    confirm_readings: 1", series([90, 90]), head=head,
                           params=params)) == [0.0]
    text = pack(spo2_rule(), head=head, params=params)
    site = "site: s\npacks:\n  p:\n    params: {confirm_n: 3}\n"
    rs = load_rules_text({"p.yaml": text}, {"s.yaml": site})
    assert rs.rules[0].confirm_readings == 3
    assert "confirmed by 3 readings (of spo2)" in rs.explain("p.low")
    assert "confirm_n = 3   from site 's' (s.yaml) at s.yaml:4:25" in rs.explain("p.low")
    eps = rs.evaluate(telemetry(series([90, 90, 90])), patients(("a", "copd", 70)))
    assert opened(eps) == [20.0]
    with pytest.raises(RuleError, match="param 'confirm_n' = 4 is above its maximum 3"):
        load_rules_text({"p.yaml": text}, {"s.yaml": site.replace("3}", "4}")})
