"""The rule expression language: grammar, printer round trip, type/unit checker, compiler.

The parser must accept exactly the documented language, print trees back to text that parses to
the same tree (hypothesis round trip), and never raise anything but RuleError on any text (fuzz).
"""
from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import RuleError
from engine.ruleset.lang.types import T_BOOL, T_STRING, Symbol, check_expression, number
from engine.ruleset.lang.to_polars import compile_expr
from engine.ruleset.lang.parser import (COMPARISONS, FUNCTIONS, KEYWORDS, Binary, Bool, Call, Name, Num,
                                 Str, Unary, parse_expression, to_text)
from engine.units import DIMENSIONLESS, UNITS

a, b, c = Name("a"), Name("b"), Name("c")


# ------------------------------------------------------------------------------------------
# Grammar: what parses, into which tree
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, tree", [
    ("2", Num(2.0)),
    ("0.5", Num(0.5)),
    (".5", Num(0.5)),
    ("2 kg", Num(2.0, "kg")),
    ("2kg", Num(2.0, "kg")),
    ("92 %", Num(92.0, "%")),
    ("92%", Num(92.0, "%")),
    ("15 min", Num(15.0, "min")),
    ("180 mg/dL", Num(180.0, "mg/dL")),
    ("100 /min", Num(100.0, "/min")),
    ("37.5 °C", Num(37.5, "°C")),
    # compound durations (engine.durations' grammar), as a quantity in their smallest unit
    ("2d12h", Num(60.0, "h")),
    ("1h30m", Num(90.0, "m")),
    ("1m30s", Num(90.0, "s")),
    ("2w3d", Num(17.0, "d")),
    ("1.5h30m", Num(120.0, "m")),
    ("3d", Num(3.0, "d")),                       # one part stays a number and its unit
    ("a > 1h30m / 2", Binary(">", a, Binary("/", Num(90.0, "m"), Num(2.0)))),
    ("true", Bool(True)),
    ("false", Bool(False)),
    ('"high"', Str("high")),
    ("'high'", Str("high")),
    ("weight_gain_3d", Name("weight_gain_3d")),
    # names that start with a keyword are names
    ("order", Name("order")), ("notify", Name("notify")), ("android", Name("android")),
    ("true_value", Name("true_value")), ("not_x", Name("not_x")),
    ("a or b and c", Binary("or", a, Binary("and", b, c))),
    ("(a or b) and c", Binary("and", Binary("or", a, b), c)),
    ("not a and b", Binary("and", Unary("not", a), b)),
    ("not a == b", Unary("not", Binary("==", a, b))),
    ("not not a", Unary("not", Unary("not", a))),
    ("a - b - c", Binary("-", Binary("-", a, b), c)),
    ("a - (b - c)", Binary("-", a, Binary("-", b, c))),
    ("a / b * c", Binary("*", Binary("/", a, b), c)),
    ("a + b * c", Binary("+", a, Binary("*", b, c))),
    ("-a * b", Binary("*", Unary("-", a), b)),
    ("a / -b", Binary("/", a, Unary("-", b))),
    ("--a", Unary("-", Unary("-", a))),
    ("a > 2 kg", Binary(">", a, Num(2.0, "kg"))),
    ("a + 1 >= b", Binary(">=", Binary("+", a, Num(1.0)), b)),
    ("(a > b) == (c > a)", Binary("==", Binary(">", a, b), Binary(">", c, a))),
    ("abs(a)", Call("abs", (a,))),
    ("min(a, 2 kg, b)", Call("min", (a, Num(2.0, "kg"), b))),
    ("f()", Call("f", ())),
    ("isnull(a) or a < 92", Binary("or", Call("isnull", (a,)), Binary("<", a, Num(92.0)))),
    ("a\n  and\tb", Binary("and", a, b)),
])
def test_parses_to_tree(text, tree):
    assert parse_expression(text) == tree


def test_positions_are_offsets_in_the_text():
    node = parse_expression("weight_gain_3d > 2 kg and x")
    assert (node.start, node.end) == (0, 27)
    left = node.left
    assert (left.left.start, left.left.end) == (0, 14)
    assert (left.right.start, left.right.end) == (17, 21)


@pytest.mark.parametrize("text, col, message, hint", [
    ("a < b < c", 7, "unexpected comparison '<'", "Comparisons cannot be chained"),
    ("a == b == c", 8, "unexpected comparison '=='", "Comparisons cannot be chained"),
    ("x = 2", 3, "unexpected character '='", "Write '==' to test equality."),
    ("a && b", 3, "unexpected character '&'", "Write 'and'"),
    ("a || b", 3, "unexpected character '|'", "Write 'or'"),
    ("!a", 1, "unexpected character '!'", "Write 'not'"),
    ("x.y > 1", 2, "unexpected character '.'", "no attribute access"),
    ("x[0] > 1", 2, "unexpected character '['", "no indexing"),
    ("a ** 2", 4, "unexpected '*'", "no power operator"),
    ("x > 1 AND y", 7, "unknown word 'AND'", "Keywords are lower case: write 'and'."),
    ("Not x", 1, "unknown word 'Not'", "write 'not'"),
    ("x > 2 mins", 7, "unknown unit 'mins'", "Did you mean 'min'"),
    ("x > 3 days", 7, "unknown unit 'days'", "Known units:"),
    ("2/x > 1", 2, "unknown unit '/x'", "write '/ x' with a space"),
    ("x > 1e5", 6, "unknown unit 'e5'", "without an exponent"),
    ("x > 2d 12h", 8, "unexpected number '12'", "without spaces: '2d12h'"),
    ("x > 1h 30m", 8, "unexpected number '30'", "without spaces: '1h30m'"),
    ("x > 2 d12h", 7, "unknown unit 'd12h'", "in one piece, with no space"),
    ("x > 2h30min", 6, "unknown unit 'h30min'", "s, m (minutes), h, d, w"),
    ("x > 2d12hx", 6, "unknown unit 'd12hx'", None),
    ("x > 2 kg kg", 10, "unexpected word 'kg'", "joined by an operator"),
    ("x y", 3, "unexpected word 'y'", "joined by an operator"),
    ("a and", 6, "the expression ends too early", None),
    ("(a", 3, "the expression ends too early; expected ')'", None),
    ("a)", 2, "unexpected ')'", None),
    ('x == "high', 6, "unexpected character '\"'", "same quote"),
    ("", 1, "the expression is empty", "weight_gain_3d > 2 kg"),
    ("   ", 1, "the expression is empty", None),
    ("x > " + "9" * 400, 5, "is too large", None),
])
def test_syntax_errors_say_where_and_what(text, col, message, hint):
    with pytest.raises(RuleError) as info:
        parse_expression(text)
    [d] = info.value.errors
    assert (d.path, d.line) == ("<expr>", 1)
    assert d.col == col
    if message:
        assert message in d.message
    if hint:
        assert hint in d.hint


def test_errors_on_later_lines_give_line_and_column():
    with pytest.raises(RuleError) as info:
        parse_expression("a > 1 and\n  b > 2 lbs")
    [d] = info.value.errors
    assert (d.line, d.col) == (2, 9)
    assert "unknown unit 'lbs'" in d.message and "'lb'" in d.hint


def test_limits_on_size_and_depth():
    with pytest.raises(RuleError, match="nested more than"):
        parse_expression("-" * 100 + "x")
    with pytest.raises(RuleError, match="longer than"):
        parse_expression("x + " * 600 + "x")
    # deep parentheses alone add no tree depth
    assert parse_expression("(" * 200 + "x" + ")" * 200) == Name("x")


def test_non_text_is_a_rule_error():
    for value in (None, 3, ["a"]):
        with pytest.raises(RuleError, match="must be text"):
            parse_expression(value)


# ------------------------------------------------------------------------------------------
# Printer: round trip on random trees
# ------------------------------------------------------------------------------------------
_name = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in KEYWORDS)
_unit = st.sampled_from([None, None, *UNITS])
_leaf = st.one_of(
    # any float a rule author could write (the printer is exact, but 1e-238 is 240 characters)
    st.builds(Num, st.floats(0, 1e9, allow_nan=False, allow_infinity=False).filter(
        lambda v: v == 0 or v >= 1e-9), _unit),
    st.builds(Num, st.integers(0, 10 ** 6).map(float), _unit),
    st.builds(Name, _name),
    st.builds(Bool, st.booleans()),
    st.builds(Str, st.text(st.characters(codec="utf-8", exclude_characters="\"\n\r'"),
                           max_size=8)),
)


def _extend(children):
    ops = st.sampled_from(["and", "or", "+", "-", "*", "/", *COMPARISONS])
    return st.one_of(
        st.builds(Binary, ops, children, children),
        st.builds(Unary, st.sampled_from(["not", "-"]), children),
        st.builds(Call, st.sampled_from([*FUNCTIONS, "f"]),
                  st.lists(children, max_size=3).map(tuple)),
    )


trees = st.recursive(_leaf, _extend, max_leaves=12)


@given(trees)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_print_then_parse_gives_the_same_tree(tree):
    text = to_text(tree)
    assert parse_expression(text) == tree, text


# ------------------------------------------------------------------------------------------
# Fuzz: any text either parses or raises RuleError, nothing else
# ------------------------------------------------------------------------------------------
def _only_rule_errors(text):
    try:
        parse_expression(text)
    except RuleError as err:
        assert err.errors and all(d.line >= 1 and d.col >= 1 for d in err.errors)


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None)
def test_random_text_raises_only_rule_errors(text):
    _only_rule_errors(text)


_pieces = st.sampled_from(["a", "b", "2", "0.5", ".", "kg", "%", "/", "min", "(", ")", ",",
                           " and ", " or ", "not ", "<", "<=", "==", "=", "!", "-", "+", "*",
                           '"', "'", "abs(", "true", "e5", "°C", "\n", "\\", "[", "{", "#"])


@given(st.lists(_pieces, max_size=25).map("".join))
@settings(max_examples=200, deadline=None)
def test_random_token_soup_raises_only_rule_errors(text):
    _only_rule_errors(text)


# ------------------------------------------------------------------------------------------
# Checker: names, types, units
# ------------------------------------------------------------------------------------------
SYMBOLS = {
    "weight_gain_3d": Symbol("weight_gain_3d", "detector", number(UNITS["kg"]), "wg"),
    "spo2": Symbol("spo2", "metric", number(UNITS["%"]), "spo2"),
    "silence": Symbol("silence", "detector", number(UNITS["min"]), "silence"),
    "gain_3d": Symbol("gain_3d", "param", number(UNITS["lb"]), None, 4.0),
    "plain": Symbol("plain", "param", number(None), None, 2.0),
    "news2": Symbol("news2", "score", number(DIMENSIONLESS), "news2"),
    "news2_risk": Symbol("news2_risk", "score", T_STRING, "news2_risk"),
    "flag": Symbol("flag", "detector", T_BOOL, "flag"),
}


def check(text):
    node = parse_expression(text)
    checker, problems = check_expression(node, SYMBOLS, source=text)
    return node, checker, problems


@pytest.mark.parametrize("text", [
    "weight_gain_3d > 2", "weight_gain_3d > 2 kg", "weight_gain_3d > 2000 g",
    "weight_gain_3d > gain_3d", "weight_gain_3d > plain", "spo2 < 92 % and not flag",
    "silence > 2 d", "silence > 36 h", "news2 >= 5", 'news2_risk == "high"', "flag == true",
    "abs(weight_gain_3d) > 1", "max(weight_gain_3d, 1 kg) > 2", "isnull(spo2)",
    "coalesce(flag, false)", "coalesce(spo2, 100) < 92", "weight_gain_3d / 3 d > 0.5 kg / 1 d",
    "weight_gain_3d * 2 > 4 kg", "-weight_gain_3d < -2",
])
def test_well_typed(text):
    _, _, problems = check(text)
    assert problems == []


@pytest.mark.parametrize("text, col, message, hint", [
    ("weight_gain_3 > 2", 1, "unknown name 'weight_gain_3'.",
     "Did you mean 'weight_gain_3d' or 'gain_3d'? Known names: flag, gain_3d,"),
    ("weight_gain_3d > 92 %", 18, "cannot compare: '92 %' is a percentage", "Write it in kg."),
    ("weight_gain_3d + spo2 > 1", 18, "cannot add: 'spo2' is a percentage", "a mass"),
    ("silence > 2 kg", 11, "'2 kg' is a mass", "Write it in min."),
    ("weight_gain_3d", 1, "expected a condition (true/false) but 'weight_gain_3d' is a mass",
     "weight_gain_3d > 2"),
    ("spo2 < 92 and weight_gain_3d", 15, "'and' needs a condition", "Compare it"),
    ("not spo2", 5, "'not' needs a condition", ""),
    ('news2_risk > "a"', 14, "'>' cannot order text values", "Only == and !="),
    ("flag < true", 8, "'<' cannot order conditions", ""),
    ("news2 == \"high\"", 10, "cannot compare: 'news2' is a plain number but '\"high\"' is a "
                              "text value", ""),
    ("ab(spo2) > 1", 1, "unknown function 'ab'.", "Did you mean 'abs'?"),
    ("__import__('os')", 1, "unknown function '__import__'.", "Known functions: abs"),
    ("spo2(3) > 1", 1, "unknown function 'spo2'.", "'spo2' is a metric, not a function"),
    ("abs > 1", 1, "unknown name 'abs'.", "'abs' is a function"),
    ("min(spo2) > 1", 1, "min() takes at least 2 arguments; got 1.", ""),
    ("abs(spo2, 1) > 1", 1, "abs() takes exactly 1 argument; got 2.", ""),
    ("abs(flag)", 5, "abs() needs a number but 'flag' is a condition", ""),
    ("coalesce(flag, 1) > 0", 16, "'1' is a number", ""),
])
def test_type_and_unit_errors(text, col, message, hint):
    _, _, problems = check(text)
    assert problems, text
    p = problems[0]
    assert p.offset + 1 == col
    assert message in p.message
    assert hint in p.hint


def test_every_problem_of_an_expression_is_reported():
    _, _, problems = check("foo > 1 and bar < 2 kg and spo2 > 3 kg")
    assert [p.message.split(".")[0] for p in problems] == [
        "unknown name 'foo'", "unknown name 'bar'",
        "cannot compare: '3 kg' is a mass (like kg, g, lb) but 'spo2' is a percentage (like %)"]


# ------------------------------------------------------------------------------------------
# Compiler: polars expressions, nulls, units
# ------------------------------------------------------------------------------------------
FRAME = pl.DataFrame({
    "wg": [1.0, 2.5, None, 2.5],
    "spo2": [95.0, 91.0, 90.0, None],
    "silence": [60.0, 2880.0, 2881.0, None],
    "news2": [1.0, 5.0, None, 7.0],
    "news2_risk": ["low", "medium", None, "high"],
    "flag": [False, True, None, None],
})


def run(text):
    node, checker, problems = check(text)
    assert problems == []
    return FRAME.select(compile_expr(node, checker, SYMBOLS).alias("r"))["r"].to_list()


@pytest.mark.parametrize("text, expected", [
    ("weight_gain_3d > 2", [False, True, None, True]),
    ("weight_gain_3d > 2500 g", [False, False, None, False]),
    ("weight_gain_3d >= 2500 g", [False, True, None, True]),
    ("weight_gain_3d > gain_3d", [False, True, None, True]),          # 4 lb = 1.81 kg
    ("silence > 2 d", [False, False, True, None]),                    # 2880 min is 2 d exactly
    ("silence >= 48 h", [False, True, True, None]),
    ("spo2 < 92 %", [False, True, True, None]),
    # Kleene logic: null and false is false, null or true is true
    ("spo2 < 92 and weight_gain_3d > 2", [False, True, None, None]),
    ("spo2 < 92 or weight_gain_3d > 2", [False, True, True, True]),
    ("flag and spo2 < 92", [False, True, None, None]),
    ("not flag", [True, False, None, None]),
    ("isnull(spo2)", [False, False, False, True]),
    ("coalesce(spo2, 100) < 92", [False, True, True, False]),
    ("max(weight_gain_3d, 2) > 2", [False, True, None, True]),         # a null argument: null
    ("min(spo2, 93) < 92", [False, True, True, None]),
    ("weight_gain_3d / 0 > 1", [None, None, None, None]),             # division by zero: null
    ('news2_risk == "high"', [False, False, None, True]),
    ("news2 >= 5 and news2_risk != \"low\"", [False, True, None, True]),
    ("-weight_gain_3d < -2", [False, True, None, True]),
    ("abs(weight_gain_3d - 2) < 0.6", [False, True, None, True]),
])
def test_compiled_values(text, expected):
    assert run(text) == expected
