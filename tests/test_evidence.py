"""Evidence and reasons of many episodes at once (evidence_column, reason_column) are exactly the
per-episode definitions (evidence_json, render_reason, default_reason), value by value."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ruleset.evidence import (default_reason, evidence_column, evidence_json,
                                     parse_template, reason_column, render_reason)

_value = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -0.0, 1.0, 1, True, 2.5, 69.995, 1e-7, 3600.0]),
                   st.text(max_size=8))
_unit = st.sampled_from(["", "kg", "%", "h", "min", "d", "s", "/min", "mg/dL", 'a"b'])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 6).flatmap(lambda k: st.dictionaries(
    st.sampled_from(["gain", "spo2", "limit", "t", "é", "x_1"]),
    st.tuples(st.lists(_value, min_size=k, max_size=k), _unit), max_size=4)),
    st.sampled_from([None, "Gain {gain} over {limit}.", "{spo2}{t} {{x}}", "plain text"]),
    st.sets(st.sampled_from(["limit", "t"])))
def test_columns_equal_the_row_definitions(columns, template, params):
    k = len(next(iter(columns.values()))[0]) if columns else 0
    rows = [{n: (values[i], unit) for n, (values, unit) in columns.items()} for i in range(k)]
    assert evidence_column(columns) == [evidence_json(r) for r in rows]
    parts = parse_template(template)[0] if template else None
    if parts is not None and any(n not in columns for _, n in parts if n is not None):
        return                      # a compiled rule's template names only its evidence
    want = [render_reason(parts, r) if parts else default_reason("Title.", r, params)
            for r in rows]
    assert reason_column(parts, "Title.", columns, params) == want


def test_a_duration_beyond_what_microseconds_hold_prints_as_a_number():
    """Found by hypothesis in CI: 5e298 h overflowed the duration formatter."""
    from engine.ruleset.evidence import format_value
    assert format_value(4.99e298, "h") == "4.99e+298 h"
    assert format_value(4.99e298, "h", "fr") == "4,99e+298\u00a0h"
    assert format_value(float("inf"), "h") == "inf h"
    assert format_value(90, "min") == "1h30m"
    assert format_value(2e15, "kg") == "2e+15 kg"


def test_values_equal_but_printed_differently_keep_their_texts():
    """Found by hypothesis: False and 0 share a dict key, yet print 'false' and '0'."""
    from engine.ruleset.evidence import evidence_column, evidence_json
    cols = {"gain": ([False, 0, 0.0, -0.0, True, 1], "")}
    rows = [{"gain": (v, "")} for v in cols["gain"][0]]
    assert evidence_column(cols) == [evidence_json(r) for r in rows]
