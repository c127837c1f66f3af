"""``veille rules explain RULE_ID``: a rule, its effective params and where each came from, its
detectors, rationale and references — as plain text a clinician can read."""
from __future__ import annotations

from ..durations import format_duration
from .packs import CompiledRule


def _durations(r: CompiledRule) -> str:
    text = (f"for {format_duration(r.for_us)}, cooldown {format_duration(r.cooldown_us)}, "
            f"resolve after {format_duration(r.resolve_after_us)}, on missing data: "
            f"{r.on_missing}")
    if r.confirm_readings > 1:
        of = "any metric" if r.confirm_metrics is None else ", ".join(r.confirm_metrics)
        text += f", confirmed by {r.confirm_readings} readings (of {of})"
    return text


def _scope(pack) -> list[str]:
    """The scope line, and one line per key a site set (with the pack's own value)."""
    s = pack.scope
    if s is None:                          # a pack built by hand, without provenance
        cohort = "any" if pack.cohorts is None else ", ".join(pack.cohorts)
        return [f"  scope      cohort {cohort}"]
    lines = [f"  scope      {s.describe()}"]
    for key in ("cohort", "min_age", "max_age"):
        if key in s.origin and s.source.get(key, "").startswith("site"):
            value = (("any" if s.cohorts is None else ", ".join(s.cohorts)) if key == "cohort"
                     else getattr(s, key))
            lines.append(f"             {key} {value}   from {s.source[key]} at {s.origin[key]}")
    if any(v.startswith("site") for v in s.source.values()):
        pack_cohorts = "any" if s.pack_cohorts is None else ", ".join(s.pack_cohorts)
        lines.append(f"             (the pack's own scope: cohort {pack_cohorts}"
                     + "".join(f", {k} {getattr(pack.base.scope, k)}" for k in
                               ("min_age", "max_age") if pack.base is not None
                               and getattr(pack.base.scope, k) is not None) + ")")
    return lines


def explain_rule(rs, rule_id: str) -> str:
    """Plain text describing one rule as loaded (site overrides applied)."""
    pack, r = rs.find_rule(rule_id)
    lines = [f"{r.id} — {r.title}",
             f"  pack       {pack.name} {pack.version} ({pack.path})",
             f"  defined at {r.origin}",
             f"  severity   {r.severity}   (set at {r.severity_origin})"]
    if not r.enabled:
        lines.append(f"  DISABLED   (at {r.enabled_origin})")
    lines += _scope(pack)
    lines += [f"  when       {r.when}",
              f"  timing     {_durations(r)}"]
    if r.reason:
        lines.append(f"  reason     {r.reason}")
    if r.params:
        lines.append("  params")
        for p in r.params.values():
            derived = f" = {p.text}" if p.depends else ""
            lines.append(f"    {p.name} = {p.display()}{derived}   from {p.source} at {p.origin}")
            if p.doc:
                lines.append(f"        {p.doc}")
    if r.detectors:
        lines.append("  detectors")
        for name in r.detectors:
            d = pack.detectors[name]
            spec = ", ".join(f"{k}: {v}" for k, v in d.spec.items())
            stale = ("" if d.staleness_us is None
                     else f"; staleness {format_duration(d.staleness_us)}")
            lines.append(f"    {name}: {{{spec}}}{stale}   (at {d.origin})")
    others = [n for n in r.evidence_names
              if pack.symbols[n].kind in ("metric", "score", "patient")]
    if others:
        lines.append("  also reads")
        for n in others:
            s = pack.symbols[n]
            stale = pack.staleness_us.get(n)
            extra = f"; staleness {format_duration(stale)}" if stale else ""
            lines.append(f"    {n}: {s.kind}, {s.doc}{extra}")
    if r.rationale:
        lines.append("  rationale")
        lines.extend(f"    {line}" for line in r.rationale.strip().splitlines())
    if r.references:
        lines.append("  references")
        lines.extend(f"    - {ref}" for ref in r.references)
    return "\n".join(lines)
