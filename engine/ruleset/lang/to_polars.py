"""Compile a checked expression to a polars expression over the evaluation timeline.

Null semantics (rules/README.md, "Missing data"): a null operand makes arithmetic and comparisons
null; ``and``/``or``/``not`` follow three-valued (Kleene) logic, so ``null and false`` is false
and ``null or true`` is true; ``min``/``max`` are null when any argument is null (polars'
horizontal min would silently skip it); a division by zero is null, not infinity. Units: when two
compatible quantities meet (``+ -``, comparisons, ``min``/``max``/``coalesce``) the right-hand
ones are converted to the unit of the first typed operand, so the comparison happens in one unit.
"""
from __future__ import annotations

import operator

import polars as pl

from .types import BOOL, NUMBER, STRING, Checker, Symbol, Type
from .parser import Binary, Bool, Call, Name, Node, Num, Str, Unary, postorder

_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "==": operator.eq, "!=": operator.ne}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def _literal(value, t: Type) -> pl.Expr:
    if t.kind == BOOL:
        return pl.lit(value, pl.Boolean)
    if t.kind == STRING:
        return pl.lit(value, pl.String)
    return pl.lit(None if value is None else float(value), pl.Float64)


def _to(expr: pl.Expr, t: Type, target: Type) -> pl.Expr:
    """``expr`` of type ``t`` converted to the unit of ``target`` (a no-op when untyped)."""
    if t.kind != NUMBER or t.unit is None or target.unit is None:
        return expr
    ratio = target.unit.ratio(t.unit)
    return expr if ratio == 1.0 else expr * ratio


def compile_expr(node: Node, checker: Checker, symbols: dict[str, Symbol]) -> pl.Expr:
    """The polars expression of a checked tree (``checker.types`` must cover every node).

    Names become ``pl.col(symbol.column)``, params become literals of their value.
    """
    out: dict[int, pl.Expr] = {}
    for n in postorder(node):
        out[id(n)] = _one(n, out, checker, symbols)
    return out[id(node)]


def _one(n: Node, out: dict[int, pl.Expr], checker: Checker, symbols) -> pl.Expr:
    t = checker.type_of(n)
    if isinstance(n, (Num, Str, Bool)):
        return _literal(n.value, t)
    if isinstance(n, Name):
        sym = symbols[n.name]
        if sym.column is None:
            return _literal(sym.value, sym.type)
        col = pl.col(sym.column)
        return col.cast(pl.Float64) if t.kind == NUMBER else col
    if isinstance(n, Unary):
        inner = out[id(n.operand)]
        return ~inner if n.op == "not" else -inner
    if isinstance(n, Binary):
        a, b = out[id(n.left)], out[id(n.right)]
        ta, tb = checker.type_of(n.left), checker.type_of(n.right)
        if n.op == "and":
            return a & b
        if n.op == "or":
            return a | b
        if n.op in ("*", "/"):
            # products keep each side in its own unit: the result's unit is their product
            if n.op == "*":
                return a * b
            return pl.when(b == 0).then(pl.lit(None, pl.Float64)).otherwise(a / b)
        common = t if n.op in ("+", "-") else (ta if ta.unit is not None else tb)
        a, b = _to(a, ta, common), _to(b, tb, common)
        fn = _COMPARE.get(n.op) or _ARITH[n.op]
        return fn(a, b)
    assert isinstance(n, Call)
    args = [out[id(a)] for a in n.args]
    types = [checker.type_of(a) for a in n.args]
    if n.func == "isnull":
        return args[0].is_null()
    if n.func == "abs":
        return args[0].abs()
    args = [_to(a, ta, t) for a, ta in zip(args, types)]
    if n.func == "coalesce":
        return pl.coalesce(args)
    any_null = pl.any_horizontal([a.is_null() for a in args])
    both = pl.min_horizontal(args) if n.func == "min" else pl.max_horizontal(args)
    return pl.when(any_null).then(pl.lit(None, pl.Float64)).otherwise(both)


def evaluate_constant(node: Node, checker: Checker, symbols: dict[str, Symbol]):
    """The value of an expression made of literals and params only (a param's value)."""
    value = pl.select(compile_expr(node, checker, symbols).alias("v")).item()
    return value
