"""Params: named values a site may tune without touching a rule's expression.

A param's value is a number (``2``), a quantity (``2 kg``), true/false, a quoted text, or an
expression of other params (``gain_3d / 2``). Params are resolved in dependency order; a cycle
(``a: b * 2``, ``b: a / 2``) is an error naming the whole cycle. A site override replaces a
param's text; everything that depends on it follows. Each effective value keeps its origin
(``file:line:col`` and ``pack …`` or ``site …``) so ``veille rules explain`` can say where it came
from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..lang.types import ERROR, NUMBER, Symbol, Type, check_expression
from ..lang.to_polars import evaluate_constant
from ..packs import EffectiveParam
from ..format.diagnostics import Diagnostics, did_you_mean, shown
from ..evidence import format_value
from ..lang.parser import Bool, Num, names, parse_problems
from ..format.source import Source


@dataclass(frozen=True)
class ParamText:
    """One written value of a param: the YAML value, its file and path, and who set it."""

    name: str
    raw: object
    src: Source
    path: tuple
    source: str          # 'pack heart_failure' or "site 'lyon'"
    doc: str = ""

    @property
    def origin(self) -> str:
        line, col = self.src.pos(self.path)
        return f"{self.src.label}:{line}:{col}"

    def add(self, diags: Diagnostics, offset: int, message: str, hint: str = "") -> None:
        line, col = (self.src.text_pos(self.path, offset) if isinstance(self.raw, str)
                     else self.src.pos(self.path))
        diags.add(self.src.label, line, col, message, hint)


def _parse(p: ParamText, diags: Diagnostics):
    if isinstance(p.raw, bool):
        return Bool(p.raw)
    if isinstance(p.raw, (int, float)):
        value = float(p.raw)
        if value != value or value in (float("inf"), float("-inf")):
            p.add(diags, 0, f"param '{p.name}' must be a finite number.")
            return None
        # a negative YAML number is kept as a literal: the grammar has no negative literal
        return Num(value)
    node, problems = parse_problems(p.raw)
    for pr in problems:
        p.add(diags, pr.offset, f"param '{p.name}': {pr.message}", pr.hint)
    return node


def _cycles(deps: dict[str, list[str]]) -> tuple[list[str], list[list[str]]]:
    """Topological order of the params and every cycle found (iterative DFS)."""
    order, cycles, state = [], [], {}
    for root in deps:
        if state.get(root):
            continue
        stack = [(root, iter(deps[root]))]
        state[root], path = 1, [root]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
                order.append(node)
            elif state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(deps[nxt])))
    return order, cycles


def resolve_params(texts: dict[str, ParamText], others: dict[str, Symbol],
                   diags: Diagnostics, *, expected: dict[str, Type] | None = None,
                   ) -> tuple[dict[str, EffectiveParam], bool]:
    """Resolve every param; returns the params that resolved and whether all did.

    Every error is reported in ``diags`` once: a param that depends on a failed one is skipped
    silently, as is a param using a name in ``others`` of kind ``broken`` (already reported).

    Parameters
    ----------
    texts : dict
        name -> its written value (the pack's, or a site's where overridden).
    others : dict
        The pack's other names (metrics, detectors, scores): a param may not use them, and the
        message says so.
    expected : dict, optional
        name -> the type of the pack's own value. A site's value must agree: a plain number
        takes the pack's unit (``gain_3d: 2.5`` means 2.5 kg when the pack wrote ``2 kg``); a
        quantity must have a compatible unit.
    """
    nodes = {name: _parse(p, diags) for name, p in texts.items()}
    failed = {name for name, node in nodes.items() if node is None}
    deps: dict[str, list[str]] = {}
    for name, node in nodes.items():
        deps[name] = []
        if node is None:
            continue
        for n in names(node):
            if n.name in texts:
                deps[name].append(n.name)
                continue
            failed.add(name)
            if n.name in others and others[n.name].kind == "broken":
                continue
            if n.name in others:
                texts[name].add(diags, n.start, f"param '{name}' uses '{n.name}', which is a "
                                f"{others[n.name].kind}.", "A param is a constant: it may use "
                                "numbers, units and other params only.")
            else:
                texts[name].add(diags, n.start, f"param '{name}' uses the unknown param "
                                f"'{n.name}'.", did_you_mean(n.name, texts, noun="params"))
    order, cycles = _cycles(deps)
    for cycle in cycles:
        p = texts[cycle[0]]
        p.add(diags, 0, "params form a cycle: " + " -> ".join(cycle) + ".",
              "A param may use other params, but not itself through them.")
        failed.update(cycle)
    out: dict[str, EffectiveParam] = {}
    symbols: dict[str, Symbol] = {}
    for name in order:
        p, node = texts[name], nodes[name]
        if name in failed or any(d not in out for d in deps[name]):
            failed.add(name)
            continue
        checker, problems = check_expression(node, symbols, source=p.raw if isinstance(
            p.raw, str) else None, want=None)
        for pr in problems:
            p.add(diags, pr.offset, f"param '{name}': {pr.message}", pr.hint)
        t = checker.type_of(node)
        want = (expected or {}).get(name)
        if not (problems or t.kind == ERROR) and want is not None:
            t = _agree(p, t, want, diags)
        if problems or t is None or t.kind == ERROR:
            failed.add(name)
            continue
        value = evaluate_constant(node, checker, symbols)
        if value is None or (t.kind == NUMBER and not math.isfinite(float(value))):
            p.add(diags, 0, f"param '{name}' has no finite value: {shown(p.raw, 80)} divides by "
                  "zero or overflows.", "Give it a number, or params that make it one.")
            failed.add(name)
            continue
        if t.kind == NUMBER:
            value = float(value)
        unit = t.unit.label if (t.kind == NUMBER and t.unit is not None) else ""
        text = p.raw if isinstance(p.raw, str) else format_value(p.raw, "")
        if isinstance(p.raw, bool):
            text = "true" if p.raw else "false"
        out[name] = EffectiveParam(name, value, unit, t, text, p.origin, p.source, p.doc,
                                   tuple(dict.fromkeys(deps[name])))
        symbols[name] = Symbol(name, "param", t, None, value, p.doc)
    return out, not failed


def _agree(p: ParamText, t: Type, want: Type, diags: Diagnostics) -> Type | None:
    if t.kind != want.kind:
        p.add(diags, 0, f"param '{p.name}' must be {want.describe()}, as in the pack; got "
              f"{t.describe()}.")
        return None
    if t.kind != NUMBER:
        return t
    if t.unit is None:
        return want                      # a plain number takes the pack's unit
    if want.unit is None:
        p.add(diags, 0, f"param '{p.name}' is a plain number in the pack; got "
              f"{t.unit.describe()}.", "Give a plain number.")
        return None
    if not want.unit.compatible(t.unit):
        p.add(diags, 0, f"param '{p.name}' must be {want.unit.describe()}, as in the pack; got "
              f"{t.unit.describe()}.", f"Write it in {want.unit.label}.")
        return None
    return t


def check_bounds(params: dict[str, EffectiveParam], bounds: dict[str, tuple], texts,
                 diags: Diagnostics) -> None:
    """Each bounded param must lie in [min, max] (bounds are EffectiveParams of the pack)."""
    for name, (lo, hi) in bounds.items():
        p = params.get(name)
        if p is None or p.type.kind != NUMBER:
            continue
        for bound, is_min in ((lo, True), (hi, False)):
            if bound is None:
                continue
            v = p.value
            if p.type.unit is not None and bound.type.unit is not None:
                v = p.value * bound.type.unit.ratio(p.type.unit)
            if (is_min and v < bound.value) or (not is_min and v > bound.value):
                texts[name].add(diags, 0, f"param '{name}' = {p.display()} is "
                                f"{'below its minimum' if is_min else 'above its maximum'} "
                                f"{bound.display()} (set by the pack at {bound.origin}).",
                                "Choose a value within the range the pack allows.")

