"""Every shipped rule pack (rules/*.yaml) loads and passes its own tests.

Packs added later are picked up automatically; a pack without tests fails, since a rule nobody
has tested is not a rule a clinician can trust.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.ruleset import load_rules

RULES = Path(__file__).resolve().parents[1] / "rules"
PACKS = sorted(RULES.glob("*.yaml"))
SITES = sorted((RULES / "sites").glob("*.yaml"))


def test_packs_are_shipped():
    assert {"heart_failure", "device_silence"} <= {p.stem for p in PACKS}


@pytest.mark.parametrize("path", PACKS, ids=[p.stem for p in PACKS])
def test_pack_passes_its_own_tests(path):
    rs = load_rules([path])
    [pack] = rs.packs
    assert pack.tests, f"{path.name} has no tests"
    tested = {rid for case in pack.tests for rid, *_ in case.expect}
    untested = [r.id for r in pack.rules if r.id not in tested]
    assert not untested, f"rules never expected to fire in any test: {untested}"
    report = rs.run_tests()
    assert report.passed, report.render()


def test_the_whole_folder_loads_together_with_its_sites():
    rs = load_rules([RULES], sites=SITES)
    assert len(rs.packs) == len(PACKS)
    assert rs.run_tests().passed
