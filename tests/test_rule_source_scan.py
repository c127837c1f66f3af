"""The rule reader's checks before the YAML parser, against plain character-by-character scans:
nesting of flow brackets outside quotes and comments (engine.ruleset.format.source._too_deep_flow
visits only the characters that matter), and control characters."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from engine.ruleset.format import source
from engine.ruleset.format.source import MAX_DEPTH, _too_deep_flow


def naive_too_deep_flow(text: str) -> int | None:
    """Every character in turn, as the reader scanned before."""
    depth, i, n = 0, 0, len(text)
    quote = None
    while i < n:
        ch = text[i]
        if quote:
            if ch == quote:
                if quote == "'" and text.startswith("''", i):
                    i += 1
                else:
                    quote = None
            elif ch == "\\" and quote == '"':
                i += 1
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n"):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return i
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


_PIECES = st.sampled_from(["[", "]", "{", "}", "'", "''", '"', "\\", "\\\"", "#", " #", "\n",
                           "\t", "a", " ", "x: ", "[[[[[", "]]", "# [[[[\n", "'[[[['"])


@settings(max_examples=600, deadline=None)
@given(st.lists(_PIECES, max_size=120), st.integers(0, 3))
def test_the_flow_scan_equals_the_character_scan(pieces, lead):
    text = "[" * (MAX_DEPTH - lead) + "".join(pieces)    # near the limit, so that it matters
    assert _too_deep_flow(text) == naive_too_deep_flow(text)
    assert _too_deep_flow("".join(pieces)) == naive_too_deep_flow("".join(pieces))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7f), max_size=60))
def test_control_characters_found_as_a_scan_finds_them(text):
    want = next((i for i, ch in enumerate(text) if ch < " " and ch not in "\t\n\r"), None)
    found = source._CONTROL.search(text)
    assert (found.start() if found else None) == want
