"""A pack's ``inhibit:`` list checked against the loaded packs, into :class:`InhibitRule` s.

The schema checked the shapes; this checks the meanings, with ``file:line:col``: every rule id
and pack name must be loaded, every label name must be one a loaded rule carries (or one of the
conventional :data:`LABEL_NAMES`), ``equal`` holds ``patient_id`` and label names, and the
source side must say something (an empty source would hide every alert behind every other).
"""
from __future__ import annotations

from ..format.diagnostics import Diagnostics, did_you_mean
from ..format.source import Source
from ..packs import AlertMatcher, InhibitRule

#: label names a matcher may use even when no loaded rule carries them yet (rules/README.md,
#: "Labels"): a pack loaded alone may still name the device of another pack's rules
LABEL_NAMES = frozenset({"device", "domain", "team"})


def matcher(raw, path: tuple, src: Source, diags: Diagnostics, *, rule_ids, pack_names,
            label_names, what: str) -> AlertMatcher | None:
    """A checked matcher (None when it has an error, reported)."""
    before = len(diags)
    for key, known, noun in (("rules", rule_ids, "rules"), ("packs", pack_names, "packs")):
        for j, name in enumerate(getattr(raw, key) or ()):
            if name not in known:
                line, col = src.pos(path + (key, j))
                diags.add(src.label, line, col, f"{what}: unknown {noun[:-1]} '{name}'.",
                          did_you_mean(name, known, noun=f"loaded {noun}"))
    for name in (raw.labels or {}):
        if name not in label_names:
            line, col = src.key_pos(path + ("labels", name))
            diags.add(src.label, line, col, f"{what}: no loaded rule carries label '{name}'.",
                      did_you_mean(name, label_names, noun="labels"))
    if len(diags) > before:
        return None
    return AlertMatcher(
        rules=frozenset(raw.rules) if raw.rules is not None else None,
        packs=frozenset(raw.packs) if raw.packs is not None else None,
        severity=frozenset(raw.severity) if raw.severity is not None else None,
        labels=tuple(sorted((raw.labels or {}).items())))


def compile_inhibitions(src: Source, model, packs, diags: Diagnostics) -> tuple:
    """The :class:`InhibitRule` s of the pack ``model`` (read from ``src``), checked against
    the loaded ``packs`` (compiled, site overrides applied)."""
    rule_ids = {r.id for p in packs for r in p.rules}
    pack_names = {p.name for p in packs}
    label_names = set(LABEL_NAMES) | {k for p in packs for r in p.rules for k in r.labels}
    out = []
    for i, item in enumerate(getattr(model, "inhibit", None) or ()):
        where = ("inhibit", i)
        what = f"inhibit[{i}]"
        sides = {}
        for side in ("source", "target"):
            raw = getattr(item, side)
            if side == "source" and not (raw.rules or raw.packs or raw.severity or raw.labels):
                line, col = src.pos(where + (side,))
                diags.add(src.label, line, col, f"{what}: the source matches every alert.",
                          "Give at least one of rules, packs, severity or labels: an empty "
                          "source would hide alerts behind any other alert.")
                continue
            sides[side] = matcher(raw, where + (side,), src, diags, rule_ids=rule_ids,
                                  pack_names=pack_names, label_names=label_names,
                                  what=f"{what}.{side}")
        for j, name in enumerate(item.equal):
            if name != "patient_id" and name not in label_names:
                line, col = src.pos(where + ("equal", j))
                diags.add(src.label, line, col, f"{what}.equal: '{name}' is neither "
                          "patient_id nor a label name.",
                          did_you_mean(name, label_names | {"patient_id"}, noun="names"))
        if "patient_id" not in item.equal:
            line, col = src.pos(where + ("equal",))
            diags.add(src.label, line, col, f"{what}.equal must hold patient_id.",
                      "An alert of one patient never hides another patient's: write "
                      "equal: [patient_id, ...].")
        if sides.get("source") is None or sides.get("target") is None:
            continue
        line, col = src.key_pos(where)
        out.append(InhibitRule(sides["source"], sides["target"], tuple(item.equal),
                               item.reason.strip(), f"{src.label}:{line}:{col}", model.pack))
    return tuple(out)
