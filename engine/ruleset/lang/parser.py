"""Rule expressions: the syntax tree, the parser (lark, LALR) and the printer.

The language is deliberately small (rules/README.md, "Expressions"): numbers with an optional
unit (``2 kg``, ``92 %``, ``15 min``), compound durations (``2d12h``, read as ``60 h``), quoted
strings, ``true``/``false``, names (detectors, scores, metrics, params, patient context),
``+ - * /``, the comparisons ``< <= > >= == !=``, ``and``/``or``/``not``, parentheses and a few
functions (``abs``, ``min``, ``max``, ``coalesce``, ``isnull``). There is no attribute access,
indexing, import or evaluation of Python: text is parsed by a grammar into the dataclasses below
and nothing else.

:func:`parse_expression` raises :class:`engine.errors.RuleError` on any text it cannot read (and
nothing else); :func:`to_text` prints a tree back so that ``parse_expression(to_text(t)) == t``.

>>> from engine.ruleset.lang.parser import parse_expression, to_text
>>> to_text(parse_expression("weight_gain_3d>2kg and not(isnull(spo2))"))
'weight_gain_3d > 2 kg and not isnull(spo2)'
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Union

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ... import durations as _durations
from ... import units as _units
from ..format.diagnostics import Diagnostic
from ...errors import RuleError

KEYWORDS = ("and", "or", "not", "true", "false")
FUNCTIONS = ("abs", "min", "max", "coalesce", "isnull")
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
#: longest accepted expression and deepest nesting: far beyond any real rule, and they keep
#: every recursive walk of a tree well inside Python's recursion limit
MAX_LENGTH = 2000
MAX_DEPTH = 60


# ------------------------------------------------------------------------------------------
# The syntax tree. ``start``/``end`` are character offsets in the source text; they are
# excluded from equality so that a printed and re-parsed tree equals the original.
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Num:
    """A number, with the unit spelled as written (``2 kg`` → Num(2.0, 'kg'))."""
    value: float
    unit: str | None = None
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Str:
    value: str
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Bool:
    value: bool
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Name:
    name: str
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Unary:
    """``-x`` (op '-') or ``not x`` (op 'not')."""
    op: str
    operand: "Node"
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Binary:
    """Arithmetic (``+ - * /``), comparison (:data:`COMPARISONS`) or logic (``and``, ``or``)."""
    op: str
    left: "Node"
    right: "Node"
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple["Node", ...]
    start: int = field(default=0, compare=False)
    end: int = field(default=0, compare=False)


Node = Union[Num, Str, Bool, Name, Unary, Binary, Call]


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def walk(node: Node):
    """Every node of the tree, parents before children (iterative: no recursion limit)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def postorder(node: Node):
    """Every node of the tree, children before their parent (iterative: no recursion limit).

    The checker and the compiler walk this way: a node is typed or compiled from its children.
    """
    stack = [(node, False)]
    while stack:
        n, visited = stack.pop()
        if visited:
            yield n
        else:
            stack.append((n, True))
            stack.extend((c, False) for c in reversed(children(n)))


def names(node: Node) -> list[Name]:
    """The Name nodes of a tree in source order (function names are not Names)."""
    return sorted((n for n in walk(node) if isinstance(n, Name)), key=lambda n: n.start)


# ------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExprProblem:
    """A mistake inside an expression, at a character offset of its text."""
    offset: int
    message: str
    hint: str = ""


_PARSER = Lark((Path(__file__).with_name("grammar.lark")).read_text(encoding="utf-8"),
               parser="lalr", propagate_positions=True, maybe_placeholders=True)

_BINARY = {"or_": "or", "and_": "and", "add": "+", "sub": "-", "mul": "*", "div": "/"}

#: how the parser's terminals read in a message
_TERMINALS = {
    "NUMBER": "a number", "NAME": "a name", "STRING": "a quoted string", "UNIT": "a unit",
    "DURATION": "a duration",
    "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'",
    "SLASH": "'/'", "COMP_OP": "a comparison (<, <=, >, >=, ==, !=)", "AND": "'and'",
    "OR": "'or'", "NOT": "'not'", "TRUE": "'true'", "FALSE": "'false'", "$END": "the end",
}
_CHAR_HINTS = {
    "=": "Write '==' to test equality.",
    "&": "Write 'and' to combine conditions.",
    "|": "Write 'or' to combine conditions.",
    "!": "Write 'not' to negate a condition, or '!=' for 'not equal'.",
    ".": "There is no attribute access: names are plain words like weight_gain_3d, and a number "
         "is written 0.5, not .5x.",
    "[": "There is no indexing: use a detector to look back in time.",
    "^": "There is no power operator.",
    "#": "Comments belong in YAML, outside the expression.",
    '"': "A text starts and ends with the same quote, on one line: \"high\".",
    "'": "A text starts and ends with the same quote, on one line: 'high'.",
}


def _describe_expected(expected) -> str:
    names = sorted({_TERMINALS.get(e, f"'{e.lower()}'") for e in expected
                    if not e.startswith("__")})
    if not names:
        return "something else"
    return ", ".join(names[:-1]) + (" or " if len(names) > 1 else "") + names[-1]


def _token_text(tok: Token) -> str:
    if tok.type == "$END":
        return "the end of the expression"
    # a word the parser did not expect may have been read as a unit: it is a word to the user
    kind = {"NUMBER": "number", "NAME": "name", "STRING": "string", "UNIT": "word",
            "COMP_OP": "comparison", "DURATION": "duration"}.get(tok.type)
    return f"{kind} '{tok}'" if kind else f"'{tok}'"


_MISCASED = re.compile(r"\b(" + "|".join(KEYWORDS) + r")\b", re.IGNORECASE)
_QUOTED = re.compile(r"\"[^\"\n]*\"|'[^'\n]*'")


def _miscased_keyword(text: str, before: int) -> ExprProblem | None:
    """'AND', 'Or', 'NOT' before the error: the likely cause, reported instead of its effect."""
    bare = _QUOTED.sub(lambda m: " " * len(m.group()), text)
    for m in _MISCASED.finditer(bare):
        word = m.group()
        if m.start() <= before and word != word.lower():
            return ExprProblem(m.start(), f"unknown word '{word}'.",
                               f"Keywords are lower case: write '{word.lower()}'.")
    return None


def _syntax_problem(text: str, err: UnexpectedInput) -> ExprProblem:
    at = getattr(err, "pos_in_stream", None)
    if at is None:
        at = len(text)
    miscased = _miscased_keyword(text, at)
    if miscased is not None:
        return miscased
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        return ExprProblem(err.pos_in_stream, f"unexpected character '{ch}'; expected "
                           f"{_describe_expected(err.allowed or ())}.",
                           _CHAR_HINTS.get(ch, ""))
    if isinstance(err, UnexpectedEOF):
        return ExprProblem(len(text), "the expression ends too early; expected "
                           f"{_describe_expected(err.expected)}.")
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    offset = tok.start_pos if tok.start_pos is not None else len(text)
    hint = ""
    if tok.type == "COMP_OP" and "COMP_OP" not in err.expected:
        hint = "Comparisons cannot be chained (a < b < c): combine them with 'and'."
    elif tok.type == "$END":
        offset = len(text)
    elif tok.type == "STAR" and text[offset - 1:offset] == "*":
        hint = "There is no power operator: write x * x."
    elif tok.type in ("NUMBER", "DURATION") and _SPACED_DURATION.search(text[:offset]) \
            and _DURATION_START.match(text, offset):
        before = _SPACED_DURATION.search(text[:offset])
        after = _DURATION_START.match(text, offset)
        joined = before.group(1) + before.group(2) + after.group(1) + after.group(2)
        hint = f"A duration is written without spaces: '{joined}'."
    elif tok.type in ("NAME", "UNIT", "NUMBER", "DURATION", "STRING", "LPAR") and (
            "AND" in err.expected or "OR" in err.expected or "RPAR" in err.expected):
        hint = "Two operands must be joined by an operator ('and', 'or', '+', '>', ...)."
    if tok.type == "$END":
        return ExprProblem(offset, "the expression ends too early; expected "
                           f"{_describe_expected(err.expected)}.")
    return ExprProblem(offset, f"unexpected {_token_text(tok)}; expected "
                       f"{_describe_expected(err.expected)}.", hint)


#: `2d 12h`: a number and a time unit just before the unexpected number (see the hint)
_SPACED_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])\s+$")
_DURATION_START = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])(?![A-Za-z])")
#: the unit part of `2 d12h` or `2h30min`: a duration with a space, or with a unit it lacks
_DURATION_TAIL = re.compile(r"[wdhms](?:\d+(?:\.\d+)?[A-Za-z]+)+")


def _unit_problem(tok: Token) -> ExprProblem:
    spelling = str(tok)
    if _DURATION_TAIL.fullmatch(spelling):
        return ExprProblem(tok.start_pos, f"unknown unit '{spelling}'.",
                           "A compound duration is written in one piece, with no space, from "
                           "the units s, m (minutes), h, d, w: '2d12h', '1h30m'.")
    if spelling in KEYWORDS or spelling.lower() in KEYWORDS:
        hint = (f"Keywords are lower case and go between two operands: "
                f"'{spelling.lower()}'.") if spelling.lower() in KEYWORDS else ""
        if spelling in ("true", "false"):
            hint = "A number cannot be followed by true or false."
        if spelling.lower() in KEYWORDS and spelling != spelling.lower():
            return ExprProblem(tok.start_pos, f"unknown word '{spelling}' after a number.", hint)
        return ExprProblem(tok.start_pos, f"unexpected '{spelling}' after a number.", hint)
    if spelling.startswith("/"):
        return ExprProblem(tok.start_pos, f"unknown unit '{spelling}'.",
                           f"For a division write '/ {spelling[1:]}' with a space; known rate "
                           f"units are /min, /h, /d.")
    if re.fullmatch(r"[eE][+-]?\d*", spelling):
        return ExprProblem(tok.start_pos, f"unknown unit '{spelling}'.",
                           "Numbers are written without an exponent: 100000, not 1e5.")
    close = _units.closest(spelling)
    hint = ("Did you mean " + " or ".join(f"'{c}'" for c in close) + "? ") if close else ""
    hint += "Known units: " + ", ".join(_units.UNITS) + "."
    return ExprProblem(tok.start_pos, f"unknown unit '{spelling}'.", hint)


def _number(tok: Token) -> float:
    return float(str(tok))


def _compound_duration(text: str) -> tuple[float, str]:
    """``2d12h`` as a quantity in its smallest unit: (60.0, 'h'); ``1h30m`` → (90.0, 'm').

    The grammar of :mod:`engine.durations`, so that ``value: 2d12h`` means what ``for: 2d12h``
    means. The smallest unit keeps the value exact (whole parts give a whole number).
    """
    smallest = min(re.findall(r"[wdhms]", text), key=lambda u: _durations.US[u])
    return _durations.parse_duration(text) / _durations.US[smallest], smallest


def _build(tree, problems: list[ExprProblem]) -> Node:
    """Turn lark's tree into our nodes, iteratively (post-order, explicit stack)."""
    done: dict[int, Node] = {}
    stack = [(tree, False)]
    while stack:
        t, visited = stack.pop()
        if isinstance(t, Token) or t is None:
            continue
        if not visited:
            stack.append((t, True))
            stack.extend((c, False) for c in t.children if isinstance(c, Tree))
            continue
        start, end = t.meta.start_pos, t.meta.end_pos
        kids = [done.pop(id(c)) if isinstance(c, Tree) else c for c in t.children]
        kind = t.data
        if kind == "number":
            tok, unit = kids[0], (kids[1] if len(kids) > 1 else None)
            value = _number(tok)
            if not math.isfinite(value):
                problems.append(ExprProblem(tok.start_pos, f"the number {str(tok)[:20]}... is "
                                            "too large."))
                value = 0.0
            if unit is not None and _units.lookup(str(unit)) is None:
                problems.append(_unit_problem(unit))
            node: Node = Num(value, str(unit) if unit is not None else None, start, end)
        elif kind == "duration":
            value, unit = _compound_duration(str(kids[0]))
            node = Num(value, unit, start, end)
        elif kind == "name":
            node = Name(str(kids[0]), start, end)
        elif kind == "string":
            node = Str(str(kids[0])[1:-1], start, end)
        elif kind in ("true", "false"):
            node = Bool(kind == "true", start, end)
        elif kind == "call":
            node = Call(str(kids[0]), tuple(k for k in kids[1:] if k is not None), start, end)
        elif kind == "not_":
            node = Unary("not", kids[0], start, end)
        elif kind == "neg":
            node = Unary("-", kids[0], start, end)
        elif kind == "compare":
            node = Binary(str(kids[1]), kids[0], kids[2], start, end)
        else:
            node = Binary(_BINARY[kind], kids[0], kids[1], start, end)
        done[id(t)] = node
    return done[id(tree)]


def _depth(node: Node) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in children(n))
    return deepest


def parse_problems(text: str) -> tuple[Node | None, list[ExprProblem]]:
    """Parse ``text``; return the tree (None when unreadable) and every problem found.

    This never raises: the loader maps each problem's offset to a file position.
    """
    if not isinstance(text, str):
        shown = repr(text) if len(repr(text)) <= 60 else repr(text)[:57] + "..."
        return None, [ExprProblem(0, f"an expression must be text. Got {shown} instead.")]
    if not text.strip():
        return None, [ExprProblem(0, "the expression is empty.",
                                  "Write a condition such as 'weight_gain_3d > 2 kg'.")]
    if len(text) > MAX_LENGTH:
        return None, [ExprProblem(MAX_LENGTH, f"the expression is longer than {MAX_LENGTH} "
                                  "characters.", "Split it into params or several rules.")]
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as err:
        return None, [_syntax_problem(text, err)]
    except RecursionError:  # pragma: no cover - the LALR parser is iterative; belt and braces
        return None, [ExprProblem(0, "the expression is nested too deeply.")]
    if isinstance(tree, Token):   # a lone token cannot happen with this grammar, but be safe
        return None, [ExprProblem(0, "the expression could not be read.")]
    problems: list[ExprProblem] = []
    node = _build(tree, problems)
    if _depth(node) > MAX_DEPTH:
        problems.append(ExprProblem(0, f"the expression is nested more than {MAX_DEPTH} levels "
                                    "deep.", "Split it into params or several rules."))
    return (None if problems else node), problems


def parse_expression(text: str) -> Node:
    """Parse an expression; raise :class:`RuleError` listing every problem otherwise.

    Positions in the error are 1-based line and column inside ``text``.
    """
    node, problems = parse_problems(text)
    if problems:
        diags = []
        for p in problems:
            line, col = offset_to_line_col(text if isinstance(text, str) else "", p.offset)
            diags.append(Diagnostic("<expr>", line, col, None, p.message, p.hint))
        raise RuleError("\n".join(str(d) for d in diags), errors=diags)
    assert node is not None
    return node


def offset_to_line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    before = text[:offset]
    line = before.count("\n") + 1
    col = offset - (before.rfind("\n") + 1) + 1
    return line, col


# ------------------------------------------------------------------------------------------
# Printing
# ------------------------------------------------------------------------------------------
_PRECEDENCE = {"or": 1, "and": 2, "not": 3, **{c: 4 for c in COMPARISONS},
               "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7}
_ATOM = 8


def _precedence(node: Node) -> int:
    if isinstance(node, Binary):
        return _PRECEDENCE[node.op]
    if isinstance(node, Unary):
        return _PRECEDENCE["not" if node.op == "not" else "neg"]
    return _ATOM


def format_number(value: float) -> str:
    """Positional decimal text that parses back to exactly ``value`` (no exponent)."""
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def to_text(node: Node) -> str:
    """Print a tree as expression text, with the fewest parentheses that keep its shape."""
    if isinstance(node, Num):
        text = format_number(node.value)
        return f"{text} {node.unit}" if node.unit else text
    if isinstance(node, Str):
        return f"'{node.value}'" if '"' in node.value else f'"{node.value}"'
    if isinstance(node, Bool):
        return "true" if node.value else "false"
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Call):
        return f"{node.func}({', '.join(to_text(a) for a in node.args)})"
    if isinstance(node, Unary):
        inner = to_text(node.operand)
        if _precedence(node.operand) < _precedence(node):
            inner = f"({inner})"
        return f"not {inner}" if node.op == "not" else f"-{inner}"
    p = _precedence(node)
    left, right = to_text(node.left), to_text(node.right)
    # left-associative: a same-level left operand needs no parentheses, a right one does;
    # comparisons do not chain, so a comparison operand of a comparison always needs them
    if _precedence(node.left) < p or (p == 4 and _precedence(node.left) == 4):
        left = f"({left})"
    if _precedence(node.right) <= p:
        right = f"({right})"
    return f"{left} {node.op} {right}"
