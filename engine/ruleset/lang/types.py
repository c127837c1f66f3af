"""Type and unit checking of rule expressions.

Every node has a :class:`Type`: a condition (``bool``), a ``string`` (e.g. ``news2_risk``) or a
``number`` with a :class:`~engine.ruleset.lang.units.Unit`. A number written without a unit (``2.0``)
is *untyped*: it takes the unit of what it is combined with, so ``weight_gain_3d > 2`` means
2 kg; a number written with a unit must match (``weight_gain_3d > 92 %`` is an error naming the
expected unit). The checker reports every problem of an expression, not only the first, and
never raises.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..format.diagnostics import did_you_mean
from .parser import (FUNCTIONS, Binary, Bool, Call, ExprProblem, Name, Node, Num, Str, Unary,
                   postorder)
from ...units import DIMENSIONLESS, Unit, lookup

BOOL, NUMBER, STRING, ERROR = "bool", "number", "string", "error"


@dataclass(frozen=True)
class Type:
    """``kind`` is bool, number, string or error (already reported); ``unit`` is the unit of a
    number, or None for an untyped number (a bare literal, or a param given without a unit)."""

    kind: str
    unit: Unit | None = None

    def describe(self) -> str:
        if self.kind == BOOL:
            return "a condition (true/false)"
        if self.kind == STRING:
            return "a text value"
        if self.kind == NUMBER:
            return "a number" if self.unit is None else self.unit.describe()
        return "an invalid value"


T_BOOL, T_STRING, T_ERROR = Type(BOOL), Type(STRING), Type(ERROR)
T_UNTYPED = Type(NUMBER, None)


def number(unit: Unit | None) -> Type:
    return Type(NUMBER, unit)


@dataclass(frozen=True)
class Symbol:
    """A name an expression may use.

    Attributes
    ----------
    name : str
    kind : str
        ``detector``, ``score``, ``metric``, ``param`` or ``patient``.
    type : Type
    column : str or None
        The evaluation-timeline column holding its as-of value; None for a param (a constant).
    value : object
        A param's value, in its own unit (float, bool or str); None for the others.
    doc : str
        One line for `explain` and for messages.
    """

    name: str
    kind: str
    type: Type
    column: str | None = None
    value: object = None
    doc: str = ""


def _label(node: Node, source: str | None) -> str:
    if source is not None:
        text = source[node.start:node.end]
        if text and len(text) <= 40:
            return f"'{text}'"
    if isinstance(node, Name):
        return f"'{node.name}'"
    return "this operand"


class Checker:
    """Types every node of one expression; ``types`` maps ``id(node)`` to its Type."""

    def __init__(self, symbols: dict[str, Symbol], source: str | None = None):
        self.symbols = symbols
        self.source = source
        self.types: dict[int, Type] = {}
        self.problems: list[ExprProblem] = []

    def _err(self, node: Node, message: str, hint: str = "") -> Type:
        self.problems.append(ExprProblem(node.start, message, hint))
        return T_ERROR

    def check(self, node: Node) -> Type:
        for n in postorder(node):
            self.types[id(n)] = self._type(n)
        return self.types[id(node)]

    def type_of(self, node: Node) -> Type:
        return self.types[id(node)]

    def _common(self, node: Node, operands, what: str) -> Type:
        """The shared type of operands that must agree (``+ -``, comparisons, min/max...)."""
        types = [self.type_of(o) for o in operands]
        if any(t.kind == ERROR for t in types):
            return T_ERROR
        kinds = {t.kind for t in types}
        if len(kinds) > 1:
            a, b = operands[0], next(o for o, t in zip(operands, types) if t.kind != types[0].kind)
            return self._err(b, f"{what}: {_label(a, self.source)} is {types[0].describe()} but "
                             f"{_label(b, self.source)} is {self.type_of(b).describe()}.")
        if types[0].kind != NUMBER:
            return types[0]
        unit = next((t.unit for t in types if t.unit is not None), None)
        for o, t in zip(operands, types):
            if t.unit is not None and unit is not None and not unit.compatible(t.unit):
                first = next(x for x, tt in zip(operands, types) if tt.unit is not None)
                hint = (f"Write it in {unit.label}." if unit.label else
                        "Write it without a unit.") if isinstance(o, Num) else ""
                return self._err(o, f"{what}: {_label(o, self.source)} is {t.describe()} but "
                                 f"{_label(first, self.source)} is {unit.describe()}.",
                                 hint or f"Expected {unit.describe()}.")
        return number(unit)

    def _need(self, node: Node, kind: str, what: str) -> bool:
        t = self.type_of(node)
        if t.kind in (ERROR, kind):
            return t.kind == kind
        if kind == BOOL:
            hint = ("Compare it with a threshold, e.g. "
                    f"{_label(node, self.source).strip(chr(39))} > 2."
                    if t.kind == NUMBER else "")
            self._err(node, f"{what} needs a condition (true/false) but "
                      f"{_label(node, self.source)} is {t.describe()}.", hint)
        else:
            self._err(node, f"{what} needs a number but {_label(node, self.source)} is "
                      f"{t.describe()}.")
        return False

    def _type(self, n: Node) -> Type:
        if isinstance(n, Num):
            return number(lookup(n.unit) if n.unit else None)
        if isinstance(n, Str):
            return T_STRING
        if isinstance(n, Bool):
            return T_BOOL
        if isinstance(n, Name):
            sym = self.symbols.get(n.name)
            if sym is None:
                hint = did_you_mean(n.name, self.symbols, noun="names")
                if n.name in FUNCTIONS:
                    hint = f"'{n.name}' is a function: call it, e.g. {n.name}(x)."
                return self._err(n, f"unknown name '{n.name}'.", hint)
            return sym.type
        if isinstance(n, Unary):
            if n.op == "not":
                return T_BOOL if self._need(n.operand, BOOL, "'not'") else T_ERROR
            return self.type_of(n.operand) if self._need(n.operand, NUMBER, "'-'") else T_ERROR
        if isinstance(n, Binary):
            return self._binary(n)
        assert isinstance(n, Call)
        return self._call(n)

    def _binary(self, n: Binary) -> Type:
        op = n.op
        if op in ("and", "or"):
            ok = [self._need(x, BOOL, f"'{op}'") for x in (n.left, n.right)]
            return T_BOOL if all(ok) else T_ERROR
        if op in ("+", "-"):
            if not all([self._need(x, NUMBER, f"'{op}'") for x in (n.left, n.right)]):
                return T_ERROR
            verb = "add" if op == "+" else "subtract"
            return self._common(n, (n.left, n.right), f"cannot {verb}")
        if op in ("*", "/"):
            if not all([self._need(x, NUMBER, f"'{op}'") for x in (n.left, n.right)]):
                return T_ERROR
            lu, ru = self.type_of(n.left).unit, self.type_of(n.right).unit
            if lu is None and ru is None:
                return T_UNTYPED
            return number((lu or DIMENSIONLESS).times(ru or DIMENSIONLESS, 1 if op == "*" else -1))
        # a comparison
        t = self._common(n, (n.left, n.right), "cannot compare")
        if t.kind == ERROR:
            return T_ERROR
        if t.kind in (BOOL, STRING) and op not in ("==", "!="):
            what = "conditions" if t.kind == BOOL else "text values"
            return self._err(n.right, f"'{op}' cannot order {what}.",
                             "Only == and != compare conditions or text.")
        return T_BOOL

    def _call(self, n: Call) -> Type:
        if n.func not in FUNCTIONS:
            hint = did_you_mean(n.func, FUNCTIONS, noun="functions")
            sym = self.symbols.get(n.func)
            if sym is not None:
                hint = f"'{n.func}' is a {sym.kind}, not a function: use it by name. " + hint
            return self._err(n, f"unknown function '{n.func}'.", hint)
        arity = {"abs": (1, 1), "isnull": (1, 1)}.get(n.func, (2, 99))
        if not arity[0] <= len(n.args) <= arity[1]:
            need = "exactly 1 argument" if arity[1] == 1 else "at least 2 arguments"
            return self._err(n, f"{n.func}() takes {need}; got {len(n.args)}.")
        if any(self.type_of(a).kind == ERROR for a in n.args):
            return T_ERROR
        if n.func == "isnull":
            return T_BOOL
        if n.func == "abs":
            return self.type_of(n.args[0]) if self._need(n.args[0], NUMBER, "abs()") else T_ERROR
        if n.func in ("min", "max"):
            if not all([self._need(a, NUMBER, f"{n.func}()") for a in n.args]):
                return T_ERROR
        return self._common(n, n.args, f"{n.func}() arguments must agree")


def check_expression(node: Node, symbols: dict[str, Symbol], *, source: str | None = None,
                     want: str | None = BOOL) -> tuple[Checker, list[ExprProblem]]:
    """Type ``node``; when ``want`` is given the whole expression must be of that kind.

    Returns the checker (its ``types`` feed :func:`engine.ruleset.lang.to_polars.compile_expr`) and the
    problems found, each at an offset of ``source``.
    """
    checker = Checker(symbols, source)
    t = checker.check(node)
    if want is not None and t.kind not in (ERROR, want):
        if want == BOOL:
            checker._err(node, f"expected a condition (true/false) but "
                         f"{_label(node, source)} is {t.describe()}.",
                         "Compare it with a threshold, e.g. "
                         f"{_label(node, source).strip(chr(39))} > 2." if t.kind == NUMBER else "")
        else:
            checker._err(node, f"expected {Type(want).describe()} but this is {t.describe()}.")
    checker.problems.sort(key=lambda p: p.offset)
    return checker, checker.problems
