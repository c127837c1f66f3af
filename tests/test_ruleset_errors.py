"""The malformed-pack corpus: every mistake is reported precisely, all at once, and nothing else.

Each file of ``tests/rules_corpus/packs`` (a pack) and ``tests/rules_corpus/sites`` (a site file,
loaded over the valid ``tests/rules_corpus/base.yaml``) states its expected errors in header
comments::

    # expect: LINE:COL: text that the message (and its hint) must contain

The test loads the file, requires a RuleError, and checks that its diagnostics are exactly the
expected ones: one per ``expect`` line, at that file, line and column, with that text — so a
missing message, a wrong position and an extra (cascading) message all fail.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import RuleError
from engine.ruleset import load_rules, load_rules_text

CORPUS = Path(__file__).parent / "rules_corpus"
BASE = CORPUS / "base.yaml"
PACKS = sorted((CORPUS / "packs").glob("*.yaml"))
SITES = sorted((CORPUS / "sites").glob("*.yaml"))
_EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")


def expectations(path: Path) -> list[tuple[int, int, str]]:
    out = []
    # latin-1 reads every byte: a corpus file may hold bytes that are not UTF-8 on purpose
    for line in path.read_bytes().decode("latin-1").splitlines():
        m = _EXPECT.match(line)
        if m:
            out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    assert out, f"{path} states no expected error"
    return out


def check(err: RuleError, path: Path) -> None:
    want = expectations(path)
    got = [d for d in err.errors if d.path == str(path)]
    text = "\n".join(str(d) for d in err.errors)
    assert len(got) == len(err.errors), f"errors in other files:\n{text}"
    matched = set()
    for line, col, fragment in want:
        hits = [i for i, d in enumerate(got) if (d.line, d.col) == (line, col)
                and fragment in str(d)]
        assert hits, f"expected {line}:{col}: {fragment!r}\ngot:\n{text}"
        matched.update(hits)
    extra = [str(d) for i, d in enumerate(got) if i not in matched]
    assert not extra, "unexpected errors:\n" + "\n".join(extra)
    # the message carries every diagnostic, each prefixed with file:line:col
    for d in got:
        assert f"{d.path}:{d.line}:{d.col}: " in str(err)


def test_the_corpus_is_large_enough():
    assert len(PACKS) + len(SITES) >= 20


@pytest.mark.parametrize("path", PACKS, ids=[p.stem for p in PACKS])
def test_malformed_pack(path):
    with pytest.raises(RuleError) as info:
        load_rules([path])
    check(info.value, path)


@pytest.mark.parametrize("path", SITES, ids=[p.stem for p in SITES])
def test_malformed_site_override(path):
    load_rules([BASE])                     # the base pack itself is valid
    with pytest.raises(RuleError) as info:
        load_rules([BASE], sites=[path])
    check(info.value, path)


def test_errors_of_several_files_are_reported_together_and_nothing_is_loaded():
    bad = [PACKS[7], PACKS[9]]
    with pytest.raises(RuleError) as info:
        load_rules([BASE, *bad])
    assert {d.path for d in info.value.errors} == {str(p) for p in bad}
    head = str(info.value).splitlines()[0]
    assert head == "2 errors in the rule files; nothing was loaded from a file with an error:"


def test_a_file_reports_schema_and_meaning_errors_at_once():
    text = """pack: t
version: 1
scope: {cohort: copd}
rules:
  - {id: t.a, title: A, when: spo2 < 90 %, severity: urgent}
  - {id: t.b, title: B, when: sp02 < 90, severity: high}
"""
    with pytest.raises(RuleError) as info:
        load_rules_text({"t.yaml": text})
    assert [(d.line, d.col, d.rule_id) for d in info.value.errors] == [
        (2, 10, None), (5, 54, "t.a"), (6, 31, "t.b")]


def test_missing_files_and_empty_folders(tmp_path):
    with pytest.raises(RuleError, match="file or folder not found"):
        load_rules([tmp_path / "nope.yaml"])
    with pytest.raises(RuleError, match=r"no rule pack \(\*.yaml\) in this folder"):
        load_rules([tmp_path])


def test_duplicate_packs_and_rule_ids_across_files(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(BASE.read_text())
    b.write_text(BASE.read_text().replace("pack: base", "pack: other"))
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path])
    [d] = info.value.errors
    assert d.path == str(b) and d.rule_id == "base.gain"
    assert f"rule id 'base.gain' is also used in pack 'base' ({a}:10:5)" in d.message
    b.write_text(BASE.read_text())
    with pytest.raises(RuleError, match=r"pack 'base' is already loaded from .*a.yaml"):
        load_rules([tmp_path])


# ------------------------------------------------------------------------------------------
# Mutation fuzz: a shipped pack with random edits loads or raises RuleError, nothing else
# ------------------------------------------------------------------------------------------
SHIPPED = (Path(__file__).resolve().parents[1] / "rules" / "heart_failure.yaml").read_text()
_EDITS = st.lists(st.tuples(st.integers(0, len(SHIPPED)), st.integers(0, 3),
                            st.sampled_from([" ", "\n", ":", "-", "{", "}", "[", "]", "'", '"',
                                             "x", "0", "#", "  ", "\t", "%", "&", "*", "!"])),
                  min_size=1, max_size=4)


@given(_EDITS)
@settings(max_examples=60, deadline=None)
def test_randomly_edited_packs_raise_only_rule_errors(edits):
    text = SHIPPED
    for pos, cut, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + cut:]
    try:
        load_rules_text({"hf.yaml": text})
    except RuleError as err:
        assert err.errors and all(d.path == "hf.yaml" for d in err.errors)
