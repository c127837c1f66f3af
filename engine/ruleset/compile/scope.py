"""Who a pack applies to: its ``scope`` (cohorts, age bounds), narrowed by site overrides.

A pack's scope is reviewed with the pack; a site may *narrow* it for its territory (take
``copd`` out of ``news2``, raise ``min_age``) but never widen it: a pack applied to a cohort or
an age its authors did not test it on is a new pack, not a site setting. Per key (``cohort``,
``min_age``, ``max_age``) the last site file that sets it wins (a region, then a site), each
checked against the pack's own scope — the same rule as a param and its ``min``/``max``.

Every effective key keeps its origin (``file:line:col`` and pack or site) for
``veille rules explain``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ...schema import PROGRAMMES
from ..format import schema as M
from ..format.diagnostics import Diagnostics, did_you_mean
from ..format.source import Source

AGE_LIMITS = (0, 130)


@dataclass(frozen=True)
class EffectiveScope:
    """The scope a pack is evaluated with.

    Attributes
    ----------
    cohorts : tuple of str or None
        The programmes in scope; None for any programme (``cohort: any``).
    min_age, max_age : int or None
        Inclusive age bounds in years; None when unbounded.
    origin : dict of str -> str
        ``cohort``, ``min_age``, ``max_age`` -> ``file:line:col`` of the text that set it.
    source : dict of str -> str
        The same keys -> ``pack news2`` or ``site 'meuse' (rules/sites/meuse.yaml)``.
    pack_cohorts : tuple of str or None
        The pack's own cohorts, for messages and ``explain``.
    """

    cohorts: tuple[str, ...] | None
    min_age: int | None
    max_age: int | None
    origin: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    pack_cohorts: tuple[str, ...] | None = None

    def describe(self) -> str:
        """'cohort copd, covid_home, age 18-80' (as ``explain`` prints it)."""
        text = "cohort " + ("any" if self.cohorts is None else ", ".join(self.cohorts))
        if self.min_age is not None or self.max_age is not None:
            lo = self.min_age if self.min_age is not None else 0
            hi = self.max_age if self.max_age is not None else ""
            text += f", age {lo}-{hi}"
        return text


def _where(src: Source, path) -> str:
    line, col = src.pos(path)
    return f"{src.label}:{line}:{col}"


def _cohorts(value, src: Source, path, diags: Diagnostics, *,
             within: tuple[str, ...] | None = None) -> tuple[str, ...] | None:
    """A ``cohort`` value (a programme, a list, or 'any') checked; None for 'any'.

    ``within``: the pack's cohorts, when a site narrows them (named in the hint).
    """
    cohorts = [value] if isinstance(value, str) else list(value)
    if cohorts == ["any"]:
        return None
    out = []
    for i, c in enumerate(cohorts):
        if c not in PROGRAMMES:
            where = path if isinstance(value, str) else path + (i,)
            hint = ("'any' stands alone, not in a list." if c == "any" else
                    did_you_mean(c, PROGRAMMES, noun="programmes"))
            if within is not None and c != "any":
                hint += f" The pack's scope has: {', '.join(within)}."
            line, col = src.pos(where)
            diags.add(src.label, line, col, f"unknown cohort '{c}'.", hint)
        out.append(c)
    if not out:
        line, col = src.pos(path)
        diags.add(src.label, line, col, "the cohort list is empty.", "Name a programme, or 'any'.")
    return tuple(out)


def _ages(scope, src: Source, base: tuple, diags: Diagnostics) -> None:
    for key in ("min_age", "max_age"):
        v = getattr(scope, key)
        if v is not None and not AGE_LIMITS[0] <= v <= AGE_LIMITS[1]:
            line, col = src.pos(base + (key,))
            diags.add(src.label, line, col, f"'{'.'.join(base[-1:] + (key,))}' must be between "
                      f"{AGE_LIMITS[0]} and {AGE_LIMITS[1]}. Got {v}.")


def pack_scope(src: Source, scope: M.Scope, pack: str, diags: Diagnostics) -> EffectiveScope:
    """The pack's own scope, checked (unknown cohorts, ages out of range or crossed)."""
    cohorts = _cohorts(scope.cohort, src, ("scope", "cohort"), diags)
    _ages(scope, src, ("scope",), diags)
    if scope.min_age is not None and scope.max_age is not None and scope.min_age > scope.max_age:
        line, col = src.pos(("scope", "max_age"))
        diags.add(src.label, line, col, f"scope.max_age ({scope.max_age}) is below "
                  f"scope.min_age ({scope.min_age}): no patient could match.")
    label = f"pack {pack}"
    origin = {k: _where(src, ("scope", k)) for k in ("cohort", "min_age", "max_age")
              if k == "cohort" or getattr(scope, k) is not None}
    return EffectiveScope(cohorts, scope.min_age, scope.max_age, origin,
                          {k: label for k in origin}, cohorts)


def site_scope(base: EffectiveScope, pack: str,
               overrides: Sequence[tuple[Source, M.Site]], diags: Diagnostics) -> EffectiveScope:
    """``base`` (the pack's scope) narrowed by each site's ``packs.<pack>.scope``, in order.

    A site may drop cohorts and tighten the age bounds; a cohort outside the pack's, an age
    bound below the pack's ``min_age`` or above its ``max_age``, or 'any' on a pack with
    cohorts, is an error naming the pack's own scope and where it was set.
    """
    cohorts, ages = base.cohorts, {"min_age": base.min_age, "max_age": base.max_age}
    origin, source = dict(base.origin), dict(base.source)
    set_at: dict[str, tuple[Source, tuple]] = {}
    for src, site in overrides:
        so = site.packs[pack].scope
        if so is None:
            continue
        path = ("packs", pack, "scope")
        label = f"site '{site.site}' ({src.label})"
        if so.cohort is not None:
            got = _cohorts(so.cohort, src, path + ("cohort",), diags, within=base.cohorts)
            if _narrows(got, so.cohort, base, src, path + ("cohort",), site.site, pack, diags):
                cohorts = got
                origin["cohort"], source["cohort"] = _where(src, path + ("cohort",)), label
        _ages(so, src, path, diags)
        for key in ("min_age", "max_age"):
            v = getattr(so, key)
            if v is None:
                continue
            limit = getattr(base, key)
            wider = limit is not None and (v < limit if key == "min_age" else v > limit)
            if wider:
                line, col = src.pos(path + (key,))
                word = "below" if key == "min_age" else "above"
                diags.add(src.label, line, col, f"site '{site.site}' sets scope.{key} of pack "
                          f"'{pack}' to {v}, {word} the pack's {key} {limit} (set by the pack "
                          f"at {base.origin[key]}).", "A site may narrow a pack's scope, not "
                          "widen it: choose an age within the pack's bounds.")
                continue
            ages[key] = v
            origin[key], source[key] = _where(src, path + (key,)), label
            set_at[key] = (src, path + (key,))
    lo, hi = ages["min_age"], ages["max_age"]
    if lo is not None and hi is not None and lo > hi:
        # reported where the site wrote the bound that crossed the other
        src, where = set_at.get("max_age") or set_at["min_age"]
        line, col = src.pos(where)
        diags.add(src.label, line, col, f"the effective scope of pack '{pack}' has max_age "
                  f"({hi}) below min_age ({lo}): no patient could match.",
                  f"min_age is set at {origin['min_age']}, max_age at {origin['max_age']}.")
    return EffectiveScope(cohorts, lo, hi, origin, source, base.pack_cohorts)


def _narrows(got, raw, base: EffectiveScope, src: Source, path, site: str, pack: str,
             diags: Diagnostics) -> bool:
    """Is a site's cohort value usable: valid, and within the pack's cohorts? Reports what is
    outside them (unknown and empty cohorts were reported by :func:`_cohorts`)."""
    valid = got is None or (bool(got) and all(c in PROGRAMMES for c in got))
    if base.cohorts is None:
        return valid                    # a pack for any cohort: any narrowing is one
    if got is None:
        line, col = src.pos(path)
        diags.add(src.label, line, col, f"site '{site}' cannot widen pack '{pack}' to any "
                  "cohort.", _pack_cohorts_hint(base))
        return False
    outside = [(i, c) for i, c in enumerate(got) if c in PROGRAMMES and c not in base.cohorts]
    for i, c in outside:
        line, col = src.pos(path if isinstance(raw, str) else path + (i,))
        diags.add(src.label, line, col, f"site '{site}' cannot add cohort '{c}' to pack "
                  f"'{pack}'.", _pack_cohorts_hint(base))
    return valid and not outside


def _pack_cohorts_hint(base: EffectiveScope) -> str:
    return (f"A site may narrow a pack's scope, not widen it. The pack's cohorts (set at "
            f"{base.origin['cohort']}): {', '.join(base.cohorts)}.")
