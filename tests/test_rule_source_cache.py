"""The rule parse cache (engine/ruleset/format/source.py): a file read from the cache gives the
same data and the same positions as ruamel's parse, a hit runs no parser, and a damaged or
unwritable cache never changes what is loaded (a parse planted in the user's own cache folder
does: the folder is the trust boundary)."""
from __future__ import annotations

import json
import math
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from engine.errors import RuleError
from engine.kernel_cache import seal, unseal
from engine.ruleset import load_rules, load_rules_text
from engine.ruleset.format import source as S
from engine.ruleset.format.diagnostics import Diagnostics

ROOT = Path(__file__).resolve().parents[1]
PACKS = sorted(ROOT.glob("rules/*.yaml")) + sorted(ROOT.glob("rules/sites/**/*.yaml"))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """The test's own cache folder (its ``rules/``, where the parses go)."""
    monkeypatch.setenv("VEILLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VEILLE_NO_RULE_CACHE", raising=False)
    return tmp_path / "cache" / "rules"


@pytest.fixture
def no_parser(monkeypatch):
    """Call to make every later ruamel parse fail the test."""
    def forbid():
        def load(self, stream):
            raise AssertionError("ruamel parsed a text that is in the cache")
        monkeypatch.setattr(YAML, "load", load)
    return forbid


def same(a, b) -> bool:
    """Equal, and of the same types all the way down (nan equals nan, -0.0 is not 0.0; dicts in
    the same order; times with the same zone, name included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a)
                                                      == math.copysign(1, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(same(ka, kb) and same(va, vb) for (ka, va), (kb, vb)
                                        in zip(a.items(), b.items()))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, datetime):
        return (a == b and a.fold == b.fold and a.utcoffset() == b.utcoffset()
                and a.tzname() == b.tzname() and repr(a.tzinfo) == repr(b.tzinfo))
    return a == b


def paths(data, path=()):
    """Every path into ``data``, the root included."""
    yield path
    if isinstance(data, dict):
        for k, v in data.items():
            yield from paths(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from paths(v, path + (i,))


def ruamel_tree(text: str):
    """The text parsed as :func:`read_source` parses it."""
    yaml = YAML(typ="rt")
    yaml.Composer = S._Composer
    yaml.max_depth = S.MAX_DEPTH
    return yaml.load(text)


def tree_walk(tree, path):
    """The positions (value, key; 1-based) at ``path`` read off ruamel's tree itself: how
    :class:`Source` located values before it kept a shape of its own."""
    node = tree
    pos = key_pos = (node.lc.line, node.lc.col)
    for el in path:
        if isinstance(node, dict) and not isinstance(el, int) and el in node:
            key_pos, pos = node.lc.key(el), node.lc.value(el)
        elif isinstance(node, list) and isinstance(el, int) and 0 <= el < len(node):
            key_pos = pos = node.lc.item(el)
        else:
            break
        node = node[el]
    return (pos[0] + 1, pos[1] + 1), (key_pos[0] + 1, key_pos[1] + 1)


def read(path: Path) -> S.Source:
    diags = Diagnostics()
    src = S.read_source(path, diags)
    assert src is not None and not diags.items, diags.items
    return src


def assert_same_source(got: S.Source, want: S.Source, tree) -> None:
    assert same(got.data, want.data)
    assert same(got.data, S.plain(tree))
    n = 0
    for p in paths(want.data):
        for q in (p, p + ("no_such_key",), p + (10**6,)):
            assert got.pos(q) == want.pos(q), q
            assert got.key_pos(q) == want.key_pos(q), q
            assert got.exists(q) == want.exists(q), q
        assert (got.pos(p), got.key_pos(p)) == tree_walk(tree, p), p
        value = got._walk(p)[0]
        if isinstance(value, str):
            for k in (0, len(value) // 2, len(value)):
                assert got.text_pos(p, k) == want.text_pos(p, k), (p, k)
        n += 1
    assert n > 1


# ------------------------------------------------------------------------------------------
# a hit is the same Source, without ruamel
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.name)
def test_a_cached_pack_is_the_same_source_as_ruamels(pack, cache, no_parser):
    text = pack.read_text(encoding="utf-8")
    tree = ruamel_tree(text)
    want = S.Source(str(pack), text, tree)
    first = read(pack)                                    # parsed, and cached
    assert_same_source(first, want, tree)
    assert len(list(cache.glob("*.json"))) == 1
    no_parser()
    assert_same_source(read(pack), want, tree)


def test_loading_the_bundled_packs_again_runs_no_parser(cache, no_parser):
    before = load_rules(ROOT / "rules")
    assert len(list(cache.glob("*.json"))) == len(list(ROOT.glob("rules/*.yaml")))
    no_parser()
    after = load_rules(ROOT / "rules")
    assert [r.id for r in after.rules] == [r.id for r in before.rules]
    rule = before.rules[0].id
    assert after.explain(rule) == before.explain(rule)     # positions of params included


def test_identical_texts_share_one_entry_and_files_are_owner_only(cache, tmp_path):
    text = PACKS[0].read_text(encoding="utf-8")
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert read(tmp_path / name).label == str(tmp_path / name)
    files = list(cache.glob("*.json"))
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600
    assert cache.stat().st_mode & 0o777 == 0o700


def test_the_cache_can_be_turned_off(cache, monkeypatch):
    monkeypatch.setenv("VEILLE_NO_RULE_CACHE", "1")
    read(PACKS[0])
    assert not cache.exists() or not list(cache.iterdir())


def test_a_file_with_a_value_json_cannot_carry_is_parsed_each_time(cache):
    text = "pack: p\n? [1, 2]\n: complex key\n"
    one, two = (S.read_source("k.yaml", Diagnostics(), text=text) for _ in range(2))
    assert not list(cache.glob("*.json"))
    assert one.data == two.data and (1, 2) in one.data


def test_errors_are_not_cached(cache):
    diags = Diagnostics()
    assert S.read_source("bad.yaml", diags, text="a: [1, 2\n") is None
    assert S.read_source("list.yaml", diags, text="- 1\n") is None
    assert len(diags.items) == 2
    assert not list(cache.glob("*.json"))


# ------------------------------------------------------------------------------------------
# a damaged file is parsed again and rewritten
# ------------------------------------------------------------------------------------------
def _damage(kind: str, blob: bytes, other: bytes) -> bytes:
    """``blob``, this text's cache file, damaged; ``other`` is another text's."""
    payload = unseal(blob)
    doc = json.loads(payload)
    if kind == "flipped_byte":
        i = len(blob) - len(payload) // 2
        return blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1:]
    if kind == "truncated":
        return blob[:len(blob) // 2]
    if kind == "emptied":
        return b""
    if kind == "another_texts_file":                     # sealed, for another text: renamed
        return other
    # sealed, naming this text, yet not its parse
    if kind == "shape_not_matching":                     # one list item fewer in the shape
        doc["shape"][2] = doc["shape"][2][:-1]
        return seal(json.dumps(doc).encode())
    if kind == "unknown_tag":
        return seal(payload.replace(b'["f","', b'["x","', 1))
    if kind == "untagged_float":                         # a bare JSON number, 2.0 for ["f","2.0"]
        bare = re.sub(rb'\["f","([0-9.e+-]+)"\]', rb"\1", payload, count=1)
        assert bare != payload and json.loads(bare)
        return seal(bare)
    if kind == "not_json":
        return seal(b"\x80\x04K\x01.")                   # a pickle: never unpickled
    raise AssertionError(kind)


def _cached_pair(cache: Path) -> tuple[Path, bytes]:
    """The cache file of PACKS[0], and that of PACKS[1]'s content."""
    read(PACKS[1])
    (other,) = cache.glob("*.json")
    read(PACKS[0])
    (entry,) = [f for f in cache.glob("*.json") if f != other]
    return entry, other.read_bytes()


@pytest.mark.parametrize("kind", ["flipped_byte", "truncated", "emptied", "another_texts_file",
                                  "shape_not_matching", "unknown_tag", "untagged_float",
                                  "not_json"])
def test_a_damaged_cache_file_is_parsed_again_and_rewritten(kind, cache):
    text = PACKS[0].read_text(encoding="utf-8")
    tree = ruamel_tree(text)
    want = S.Source(str(PACKS[0]), text, tree)
    entry, other = _cached_pair(cache)
    good = entry.read_bytes()
    entry.write_bytes(_damage(kind, good, other))
    assert entry.read_bytes() != good
    assert_same_source(read(PACKS[0]), want, tree)
    assert entry.read_bytes() == good                     # rewritten


def test_a_parse_planted_in_the_users_own_folder_is_believed(cache):
    """The seal is an integrity check, not a signature: whoever can write the user's own cache
    folder can plant another parse — why the folder must be owner-only (as the kernel cache's,
    where a plant would run code) and is checked so."""
    entry, other = _cached_pair(cache)
    planted = json.loads(unseal(other))
    planted["key"] = entry.stem
    entry.write_bytes(seal(json.dumps(planted).encode()))
    assert same(read(PACKS[0]).data, read(PACKS[1]).data)


# ------------------------------------------------------------------------------------------
# a cache folder that cannot be used never stops rules from loading
# ------------------------------------------------------------------------------------------
def test_an_unwritable_cache_folder_still_loads_rules(cache):
    cache.mkdir(parents=True, mode=0o700)
    os.chmod(cache, 0o500)
    try:
        rs = load_rules(PACKS[0])
        assert rs.rules
        if os.geteuid() != 0:                            # root writes through 0500
            assert not list(cache.iterdir())
    finally:
        os.chmod(cache, 0o700)


def test_a_full_disk_leaves_no_temporary_file(cache, monkeypatch):
    def full(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(S.os, "replace", full)
    want = S.Source(str(PACKS[0]), PACKS[0].read_text(encoding="utf-8"),
                    ruamel_tree(PACKS[0].read_text(encoding="utf-8")))
    assert same(read(PACKS[0]).data, want.data)
    assert not list(cache.iterdir())


def test_a_cache_folder_others_can_write_is_not_used(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("VEILLE_CACHE_DIR", str(shared))
    monkeypatch.delenv("VEILLE_NO_RULE_CACHE", raising=False)
    assert read(PACKS[0]).data["pack"]
    assert not list(shared.rglob("*.json"))


def test_the_cache_is_bounded_oldest_first(cache, monkeypatch):
    texts = [f"pack: p{i}\nrules: []\n" for i in range(3)]      # cached forms of one size
    for i, t in enumerate(texts):
        S.read_source("p.yaml", Diagnostics(), text=t)
        entry = cache / f"{S._cache_key(t)}.json"
        os.utime(entry, ns=(i * 10**9, i * 10**9))       # in order, whatever the clock's step
        monkeypatch.setattr(S, "CACHE_MAX_TOTAL", entry.stat().st_size * 3 // 2)
    (kept,) = cache.iterdir()
    assert kept.stem == S._cache_key(texts[-1])
    monkeypatch.setattr(S, "CACHE_MAX_TOTAL", 1 << 20)
    monkeypatch.setattr(S, "CACHE_MAX_FILES", 2)           # and a count
    for t in texts:
        S.read_source("p.yaml", Diagnostics(), text=t)
    assert len(list(cache.iterdir())) == 2


# ------------------------------------------------------------------------------------------
# the JSON form
# ------------------------------------------------------------------------------------------
offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59),
                        max_value=timedelta(hours=23, minutes=59))
zones = st.one_of(st.just(timezone.utc), st.builds(timezone, offsets),
                  st.builds(timezone, offsets, st.sampled_from(["Z", "+02:00", "UTC", "CET"])))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**80, 2**80),
                    st.floats(), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]),
                    st.text(), st.datetimes(timezones=zones))
keys = st.one_of(st.text(), st.integers())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)), max_leaves=30)


def _through_json(data):
    return S._from_json(json.loads(json.dumps(S._to_json(data), ensure_ascii=False).encode()))


@settings(max_examples=300, deadline=None)
@given(values)
def test_the_json_form_round_trips_exactly(data):
    assert same(_through_json(data), data)


def test_values_the_json_form_cannot_carry_are_refused():
    for value in (datetime(2026, 1, 5, tzinfo=ZoneInfo("Europe/Paris")), datetime(2026, 1, 5),
                  (1, 2), {(1, 2): 3}, b"x"):
        with pytest.raises(ValueError):
            S._to_json(value)


def test_ruamels_zone_names_are_kept():
    src = S.read_source("t.yaml", Diagnostics(), text="a: 2026-01-05T09:00:00Z\n"
                        "b: 2026-01-05 09:00:00+02:00\nc: 2026-01-05\n")
    assert same(_through_json(src.data), src.data)
    assert [v.tzname() for v in src.data.values()] == ["Z", "+02:00", "UTC"]


# ------------------------------------------------------------------------------------------
# a key merged in with <<: is located where it is written (it used to raise KeyError)
# ------------------------------------------------------------------------------------------
def test_a_merged_key_is_located_in_the_anchored_mapping(cache, no_parser):
    pack = ROOT / "rules" / "news2.yaml"
    text = pack.read_text(encoding="utf-8")
    first = '''    title:
      en: NEWS2 7 or more (high clinical risk)
      fr: "NEWS2 à 7 ou plus (risque clinique élevé)"
'''
    second = '''    title:
      en: NEWS2 5 or 6 (medium clinical risk)
      fr: "NEWS2 à 5 ou 6 (risque clinique moyen)"
'''
    assert first in text and second in text
    text = text.replace(first, first.replace("title:", "title: &t").replace(
        'fr: "NEWS2 à 7 ou plus (risque clinique élevé)"', "fr: [1]"))
    text = text.replace(second, "    title:\n      <<: *t\n"
                        "      en: NEWS2 5 or 6 (medium clinical risk)\n")
    line = text.splitlines().index("      fr: [1]") + 1
    for parsed in (True, False):                          # parsed, then from the cache
        if not parsed:
            no_parser()
        with pytest.raises(RuleError) as err:
            load_rules_text({"news2.yaml": text})
        located = [d for d in err.value.errors if "title" in d.message]
        assert {(d.line, d.rule_id) for d in located} >= {(line, "news2.high"),
                                                          (line, "news2.medium")}
