"""``veille rules explain RULE_ID``: a rule, its effective params and where each came from, its
detectors, rationale and references — as plain text a clinician can read."""
from __future__ import annotations

from ..durations import format_duration
from .compiled import CompiledRule


def _durations(r: CompiledRule) -> str:
    return (f"for {format_duration(r.for_us)}, cooldown {format_duration(r.cooldown_us)}, "
            f"resolve after {format_duration(r.resolve_after_us)}, on missing data: "
            f"{r.on_missing}")


def explain_rule(rs, rule_id: str) -> str:
    """Plain text describing one rule as loaded (site overrides applied)."""
    pack, r = rs.find_rule(rule_id)
    lines = [f"{r.id} — {r.title}",
             f"  pack       {pack.name} {pack.version} ({pack.path})",
             f"  defined at {r.origin}",
             f"  severity   {r.severity}   (set at {r.severity_origin})"]
    if not r.enabled:
        lines.append(f"  DISABLED   (at {r.enabled_origin})")
    cohort = "any" if pack.cohorts is None else ", ".join(pack.cohorts)
    ages = ""
    if pack.min_age is not None or pack.max_age is not None:
        ages = f", age {pack.min_age if pack.min_age is not None else 0}-" \
               f"{pack.max_age if pack.max_age is not None else ''}"
    lines += [f"  scope      cohort {cohort}{ages}",
              f"  when       {r.when}",
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
