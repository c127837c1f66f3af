"""A site narrowing a pack's scope: the effective scope is what evaluation uses, what the site's
tests default to and what ``explain`` shows with its origin; widening it is an error."""
from __future__ import annotations

import pytest

from engine.errors import RuleError
from engine.ruleset import load_rules_text
from tests.test_ruleset_semantics import patients, series, telemetry

PACK = """
pack: news
version: "1"
scope: {cohort: [copd, covid_home], min_age: 18}
rules:
  - {id: news.low, title: Low SpO2, when: spo2 < 92, severity: high}
tests:
  - name: copd by default
    series: {spo2: [[0m, 90]]}
    expect: [{rule: news.low, at: 0m}]
"""
SITE = """site: meuse
packs:
  news:
    scope: {cohort: covid_home}
    tests:
      - name: a covid_home patient by default, still alerted
        series: {spo2: [[0m, 90]]}
        expect: [{rule: news.low, at: 0m}]
      - name: copd is out of scope here
        cohort: copd
        series: {spo2: [[0m, 90]]}
        expect: []
"""


def load(*sites: str):
    return load_rules_text({"rules/news.yaml": PACK},
                           {f"rules/sites/s{i}.yaml": s for i, s in enumerate(sites)})


def fired(rs, programme, age=70) -> bool:
    eps = rs.evaluate(telemetry(series([90])), patients(("a", programme, age)))
    return eps.height == 1


def test_a_site_takes_a_cohort_out_of_a_pack():
    assert fired(load(), "copd") and fired(load(), "covid_home")
    rs = load(SITE)
    [p] = rs.packs
    assert (p.cohorts, p.min_age, p.max_age) == (("covid_home",), 18, None)
    assert (p.base.cohorts, p.base.min_age) == (("copd", "covid_home"), 18)
    assert not fired(rs, "copd") and fired(rs, "covid_home")
    # the pack's test runs on the pack as written, the site's on the narrowed pack
    report = rs.run_tests()
    assert report.passed, report.render()
    assert [r.case.patient["programme"] for r in report.results] == ["copd", "covid_home",
                                                                     "copd"]


@pytest.mark.parametrize("age, fires", [(39, False), (40, True), (75, True), (76, False),
                                        (None, True)])
def test_site_age_bounds_are_inclusive_and_an_unknown_age_stays_in(age, fires):
    rs = load("site: s\npacks:\n  news:\n    scope: {min_age: 40, max_age: 75}\n")
    assert rs.packs[0].cohorts == ("copd", "covid_home")        # untouched keys stay
    assert fired(rs, "copd", age) is fires


def test_explain_shows_the_effective_scope_and_where_each_key_was_set():
    text = load(SITE).explain("news.low")
    assert "  scope      cohort covid_home, age 18-\n" in text
    assert ("             cohort covid_home   from site 'meuse' (rules/sites/s0.yaml) at "
            "rules/sites/s0.yaml:4:21\n") in text
    assert "(the pack's own scope: cohort copd, covid_home, min_age 18)" in text
    plain = load().explain("news.low")
    assert "  scope      cohort copd, covid_home, age 18-\n  when" in plain


def test_several_sites_apply_in_order_each_within_the_pack():
    region = "site: region\npacks:\n  news:\n    scope: {cohort: covid_home, min_age: 30}\n"
    local = "site: local\npacks:\n  news:\n    scope: {cohort: [copd]}\n"
    rs = load(region, local)
    [p] = rs.packs
    assert (p.cohorts, p.min_age) == (("copd",), 30)
    assert p.scope.source == {"cohort": "site 'local' (rules/sites/s1.yaml)",
                              "min_age": "site 'region' (rules/sites/s0.yaml)"}
    assert p.scope.origin["cohort"] == "rules/sites/s1.yaml:4:21"


def test_a_pack_for_any_cohort_can_be_narrowed_to_some():
    text = PACK.replace("[copd, covid_home]", "any")
    rs = load_rules_text({"rules/news.yaml": text}, {"s.yaml": SITE})
    assert rs.packs[0].cohorts == ("covid_home",)
    assert not fired(rs, "heart_failure") and fired(rs, "covid_home")


@pytest.mark.parametrize("scope, message", [
    ("{cohort: [covid_home, copdd]}",
     "rules/sites/s0.yaml:4:34: unknown cohort 'copdd'. Did you mean 'copd'? Known programmes: "
     "copd, covid_home, diabetes, heart_failure, older_home, post_bariatric, sleep_apnoea. The "
     "pack's scope has: copd, covid_home."),
    ("{cohort: heart_failure}",
     "rules/sites/s0.yaml:4:21: site 'meuse' cannot add cohort 'heart_failure' to pack 'news'. "
     "A site may narrow a pack's scope, not widen it. The pack's cohorts (set at "
     "rules/news.yaml:4:17): copd, covid_home."),
    ("{cohort: [covid_home, any]}",
     "rules/sites/s0.yaml:4:34: unknown cohort 'any'. 'any' stands alone, not in a list."),
    ("{cohort: [any]}",
     "rules/sites/s0.yaml:4:21: site 'meuse' cannot widen pack 'news' to any cohort."),
    ("{min_age: 17}",
     "rules/sites/s0.yaml:4:22: site 'meuse' sets scope.min_age of pack 'news' to 17, below the "
     "pack's min_age 18 (set by the pack at rules/news.yaml:4:46)."),
    ("{cohort: copd, min_age: 131}",
     "rules/sites/s0.yaml:4:36: 'scope.min_age' must be between 0 and 130. Got 131."),
])
def test_site_scope_errors_name_the_place_and_the_fix(scope, message):
    with pytest.raises(RuleError) as info:
        load(SITE.replace("{cohort: covid_home}", scope))
    assert message in str(info.value)
    assert len(info.value.errors) == 1


def test_scope_is_the_only_new_site_key():
    with pytest.raises(RuleError, match="unknown key 'for' in packs.news.rules.news.low"):
        load("site: s\npacks:\n  news:\n    rules:\n      news.low: {for: 1h}\n")
