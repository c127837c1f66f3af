"""Rule, site and queue-test files cannot make veille read outside the folders it was given.

A folder given with ``--rules`` or ``--site`` (or to ``veille rules validate|test``) gives its
own ``*.yaml``: a link in it that leads outside the folder is refused with the file named,
nothing loaded (a writable folder elsewhere must not feed the clinical rules). A queue test
file's ``rules:`` may name packs inside the test file's folder, or ``bundled``: a ``../`` path
or a link leading out is refused at its ``file:line:col``. Every other reference a rule file
could make is none: a pack's tests carry their series inline, a site file names packs by name.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from engine.errors import InputError, RuleError
from engine.queuetest import run_files
from engine.ruleset import load_rules

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")

# a valid pack, with a test that passes: loaded, it would be scored and tested
PACK = {"pack": "outside", "version": "1", "scope": {"cohort": "copd"},
        "detectors": {"low": {"metric": "spo2", "fn": "min", "window": "6h"}},
        "params": {"limit": {"value": "90 %", "min": "85 %", "max": "94 %"}},
        "rules": [{"id": "outside.a", "title": "A", "when": "low < limit", "severity": "high",
                   "cooldown": "12h"}],
        "tests": [{"name": "n", "cohort": "copd", "series": {"spo2": [["0h", 88]]},
                   "expect": [{"rule": "outside.a", "at": "0h"}]}]}
SITE = {"site": "elsewhere", "packs": {"outside": {"params": {"limit": "88 %"}}}}
QUEUE_TEST = """\
rules: {rules}
tests:
  - name: the pack named gives the alert its pack and severity
    as_of: 2026-01-05T12:00:00Z
    alerts:
      - {{id: a, patient: P1, rule: outside.a, opened: 2026-01-05T09:00:00Z}}
    queue: [a]
"""


def _pack(path: Path, data=PACK) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))                     # JSON is YAML
    return path


@pytest.fixture
def tree(tmp_path):
    """``elsewhere/`` (a valid pack and site file, outside) and ``rules/`` (what is given)."""
    _pack(tmp_path / "elsewhere" / "outside.yaml")
    _pack(tmp_path / "elsewhere_sites" / "site.yaml", SITE)
    (tmp_path / "rules").mkdir()
    (tmp_path / "sites").mkdir()
    (tmp_path / "t.csv").write_text("patient_id,ts,metric,value\n"
                                    "P1,2026-01-05T08:00:00Z,spo2,95\n")
    return tmp_path


def _refused(r, name: str) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "error:" in r.output, r.output
    text = " ".join(r.output.split())
    assert name in text and "leads outside the folder" in text, text
    assert "nothing was read from it" in text
    return text


def test_a_link_in_a_rules_folder_leading_outside_is_refused(tree):
    link = tree / "rules" / "outside.yaml"
    link.symlink_to(tree / "elsewhere" / "outside.yaml")
    with pytest.raises(RuleError) as err:
        load_rules([tree / "rules"])
    assert [d.path for d in err.value.errors] == [str(link)]
    runner = CliRunner()
    for args in (["rules", "validate", tree / "rules"], ["rules", "test", tree / "rules"],
                 ["rules", "explain", "outside.a", "--rules", tree / "rules"],
                 ["score", tree / "t.csv", "--programme", "copd", "--model", "none",
                  "--rules", tree / "rules", "--out", tree / "q.parquet"]):
        _refused(runner.invoke(app, [str(a) for a in args]), str(link))
    assert not (tree / "q.parquet").exists()
    # the same file named on its own is the user's choice: read
    assert [p.name for p in load_rules([link]).packs] == ["outside"]


def test_a_relative_link_a_link_chain_and_a_loop_are_refused_too(tree):
    (tree / "rules" / "up.yaml").symlink_to(Path("..") / "elsewhere" / "outside.yaml")
    (tree / "rules" / "hop.yaml").symlink_to("hop2.yml")           # a link to a link ...
    (tree / "rules" / "hop2.yml").symlink_to(tree / "elsewhere" / "outside.yaml")  # ... out
    (tree / "rules" / "loop.yaml").symlink_to("loop.yaml")
    with pytest.raises(RuleError) as err:
        load_rules([tree / "rules"])
    assert sorted(Path(d.path).name for d in err.value.errors) == [
        "hop.yaml", "hop2.yml", "loop.yaml", "up.yaml"]
    why = {Path(d.path).name: d.message for d in err.value.errors}
    assert all(d.line == 0 and "nothing was read from it" in d.message
               for d in err.value.errors)
    assert "leads nowhere (a loop of links)" in why.pop("loop.yaml")
    assert all("leads outside the folder" in m for m in why.values())


def test_links_inside_the_folder_and_a_linked_folder_are_read(tree):
    _pack(tree / "rules" / "kept" / "outside.yaml")
    (tree / "rules" / "inner.yaml").symlink_to(Path("kept") / "outside.yaml")
    assert [p.name for p in load_rules([tree / "rules"]).packs] == ["outside"]
    (tree / "linked").symlink_to(tree / "rules", target_is_directory=True)
    assert [p.name for p in load_rules([tree / "linked"]).packs] == ["outside"]


def test_a_link_in_a_site_folder_leading_outside_is_refused(tree):
    _pack(tree / "rules" / "outside.yaml")
    link = tree / "sites" / "site.yaml"
    link.symlink_to(tree / "elsewhere_sites" / "site.yaml")
    with pytest.raises(RuleError) as err:
        load_rules([tree / "rules"], sites=[tree / "sites"])
    assert [d.path for d in err.value.errors] == [str(link)]
    r = CliRunner().invoke(app, ["rules", "validate", str(tree / "rules"), "--site",
                                 str(tree / "sites")])
    _refused(r, str(link))


@pytest.mark.parametrize("ref", ["../elsewhere", "../elsewhere/outside.yaml", "{abs}",
                                 "out", "inner/../../elsewhere"])
def test_a_queue_test_cannot_name_rules_outside_its_folder(tree, ref):
    tests = tree / "queue_tests"
    tests.mkdir()
    (tests / "out").symlink_to(tree / "elsewhere", target_is_directory=True)
    (tests / "inner").mkdir()
    ref = ref.format(abs=tree / "elsewhere")
    f = tests / "q.yaml"
    f.write_text(QUEUE_TEST.format(rules=ref))
    with pytest.raises(InputError, match=r"q\.yaml:1:8: rules .* leads outside the folder"):
        run_files([f])
    r = CliRunner().invoke(app, ["queue", "test", str(f)])
    _refused(r, f"{f}:1:8")
    # the same packs given on the command line are the user's choice: the test runs and passes
    r = CliRunner().invoke(app, ["queue", "test", str(f), "--rules", str(tree / "elsewhere")])
    assert r.exit_code == 0 and "1 passed, 0 failed" in r.output, r.output


def test_a_queue_test_reads_packs_inside_its_folder_and_the_bundled_ones(tree):
    tests = tree / "queue_tests"
    _pack(tests / "packs" / "outside.yaml")
    f = tests / "q.yaml"
    f.write_text(QUEUE_TEST.format(rules="packs"))
    assert run_files([f]).passed == 1
    f.write_text(QUEUE_TEST.format(rules="[packs, 7]"))
    with pytest.raises(InputError, match=r"q\.yaml:1:16: 'rules' must name a pack"):
        run_files([f])
    f.write_text(QUEUE_TEST.replace("outside.a", "news2.high").format(rules="bundled"))
    assert run_files([f]).passed == 1
