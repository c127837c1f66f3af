"""`veille rules test | validate | explain`, driven as a user would with Typer's CliRunner."""
from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from engine.commands.rules import app as rules_app

RULES = Path(__file__).resolve().parents[1] / "rules"
CORPUS = Path(__file__).parent / "rules_corpus"

cli = typer.Typer()
cli.add_typer(rules_app, name="rules")


@cli.callback()
def _root() -> None:
    """A root so that `rules` is a subcommand, as in cli.py."""


def run(*args):
    return CliRunner().invoke(cli, ["rules", *map(str, args)])


PACK = """
pack: t
version: "1"
scope: {cohort: copd}
rules:
  - {id: t.low, title: Low SpO2, when: spo2 < 90, severity: high}
tests:
  - name: fires on 88
    series: {spo2: [[0m, 95], [1h, 88]]}
    expect: [{rule: t.low, at: 1h, severity: high}]
"""


@pytest.fixture
def pack(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(PACK)
    return p


def test_test_passes_with_exit_0(pack):
    res = run("test", pack, "--verbose")
    assert res.exit_code == 0, res.output
    assert "PASS  t: fires on 88" in res.output
    assert "1 passed, 0 failed (1 tests)" in res.output


def test_a_failing_test_exits_1_with_a_readable_diff(pack):
    pack.write_text(PACK.replace("at: 1h, severity: high", "at: 2h, severity: medium"))
    res = run("test", pack)
    assert res.exit_code == 1, res.output
    out = res.output
    assert f"FAIL  t: fires on 88  [{pack}:8:5]" in out
    assert "expected: \n          t.low at 2h severity medium" in out
    assert "actual:   \n          t.low at 1h severity high (still open)" in out
    assert "- t.low at 2h severity medium   (expected, did not fire)" in out
    assert "+ t.low at 1h severity high (still open)   (fired, not expected)" in out
    assert "0 passed, 1 failed (1 tests)" in out


def test_an_unexpected_firing_fails(pack):
    pack.write_text(PACK.replace("expect: [{rule: t.low, at: 1h, severity: high}]",
                                 "expect: []"))
    res = run("test", pack)
    assert res.exit_code == 1
    assert "expected: (no firing)" in res.output


def test_a_broken_pack_exits_2_with_every_error(pack):
    bad = CORPUS / "packs" / "21_test_series_errors.yaml"
    res = run("test", bad)
    assert res.exit_code == 2
    assert res.output.startswith("error: 4 errors in the rule files;")
    assert f"{bad}:15:43: '80..5' is not a value of a compact series." in res.output
    assert "Traceback" not in res.output


def test_validate(pack):
    res = run("validate", pack)
    assert res.exit_code == 0, res.output
    assert f"ok  {pack}: pack t 1, 1 rules, 1 tests" in res.output
    assert "1 packs, 1 enabled rules, 1 tests: valid." in res.output
    res = run("validate", CORPUS / "packs" / "09_unknown_name.yaml")
    assert res.exit_code == 2
    assert "unknown name 'weight_gain_3' in `when`. Did you mean 'weight_gain_3d'" in res.output


def test_shipped_packs_pass_from_the_command_line():
    res = run("test", RULES)
    assert res.exit_code == 0, res.output
    assert " 0 failed" in res.output


def test_explain_prints_params_with_their_origin():
    res = run("explain", "hf.weight_gain_2kg_3d", "--rules", RULES)
    assert res.exit_code == 0, res.output
    out = res.output
    assert out.startswith("hf.weight_gain_2kg_3d — Weight gain over 2 kg in 3 days")
    assert "when       weight_gain_3d > gain_3d" in out
    assert f"gain_3d = 2 kg   from pack heart_failure at {RULES / 'heart_failure.yaml'}:" in out
    assert f"window_3d = 3d   from pack heart_failure at {RULES / 'heart_failure.yaml'}:" in out
    assert "weight_gain_3d: {metric: weight, fn: delta, window: 3d}; staleness 1d12h" in out
    assert "Zhang J, Goode KM" in out


def test_explain_with_a_site(tmp_path):
    site = tmp_path / "meuse.yaml"
    site.write_text("site: meuse\npacks:\n  heart_failure:\n    params: {gain_3d: 2.5}\n")
    res = run("explain", "hf.weight_gain_2kg_3d", "--rules", RULES, "--site", site)
    assert res.exit_code == 0, res.output
    assert f"gain_3d = 2.5 kg   from site 'meuse' ({site}) at {site}:4:23" in res.output


def test_explain_an_unknown_rule_suggests():
    res = run("explain", "hf.weight_gain_2kg", "--rules", RULES)
    assert res.exit_code == 2
    assert "unknown rule 'hf.weight_gain_2kg'. Did you mean 'hf.weight_gain_2kg_3d'" in res.output


def test_explain_and_validate_with_a_site_that_narrows_a_scope(tmp_path):
    site = tmp_path / "meuse.yaml"
    site.write_text("site: meuse\npacks:\n  news2:\n    scope: {cohort: [covid_home]}\n")
    res = run("explain", "news2.high", "--rules", RULES, "--site", site)
    assert res.exit_code == 0, res.output
    assert "  scope      cohort covid_home\n" in res.output
    assert f"cohort covid_home   from site 'meuse' ({site}) at {site}:4:21" in res.output
    assert "(the pack's own scope: cohort copd, covid_home)" in res.output
    site.write_text("site: meuse\npacks:\n  news2:\n    scope: {cohort: [covid_home, copdd]}\n")
    res = run("validate", RULES, "--site", site)
    assert res.exit_code == 2
    assert (f"{site}:4:34: unknown cohort 'copdd'. Did you mean 'copd'? Known programmes: copd, "
            "covid_home, diabetes,") in res.output
    assert "Traceback" not in res.output
