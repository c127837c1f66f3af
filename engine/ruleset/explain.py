"""``veille rules explain RULE_ID``: a rule, its effective params and where each came from, its
detectors, rationale and references — as plain text a clinician can read. With a patient (a
row of the patients table), the values that patient gets: a param set per patient by the care
plan, the patient context the rule reads, the time zone of its time-of-day conditions."""
from __future__ import annotations

from ..durations import format_duration
from ..errors import InputError
from .evidence import format_value
from .packs import CompiledRule


def _durations(r: CompiledRule) -> str:
    text = (f"for {format_duration(r.for_us)}, cooldown {format_duration(r.cooldown_us)}, "
            f"resolve after {format_duration(r.resolve_after_us)}, on missing data: "
            f"{r.on_missing}")
    if r.confirm_readings > 1:
        of = "any metric" if r.confirm_metrics is None else ", ".join(r.confirm_metrics)
        text += f", confirmed by {r.confirm_readings} readings (of {of})"
    return text


def _texts(key: str, texts: dict[str, str]) -> list[str]:
    """A title or reason in each of its languages, one line each: 'en: …', 'fr: …'."""
    return [f"  {key if i == 0 else '':<10} {lang}: {text}"
            for i, (lang, text) in enumerate(texts.items())]


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


def _patient_value(p, patient: dict, where: str) -> str:
    """Where a per-patient param's value comes from for this patient."""
    own = patient.get(p.patient)
    if own is None:
        return (f"    {p.name} = {p.display()}   the pack's value: column {p.patient} is empty "
                f"for this patient ({where})")
    from ..schema import CARE_PLAN
    from ..units import UNITS
    value = own * p.type.unit.ratio(UNITS[CARE_PLAN[p.patient].unit])
    return (f"    {p.name} = {format_value(value, p.unit)}   from the care plan: column "
            f"{p.patient} of {where} (the pack's value {p.display()} at {p.origin}; bounds "
            f"{'-' if p.low is None else format_value(p.low, p.unit)} to "
            f"{'-' if p.high is None else format_value(p.high, p.unit)})")


def find_patient(patients, patient_id: str, name: str) -> tuple[dict, str]:
    """The row of ``patient_id`` in a checked patients table, and how to name it."""
    import polars as pl

    hit = patients.with_row_index("__row").filter(pl.col("patient_id") == patient_id.strip())
    if hit.height == 0:
        raise InputError(f"patient {patient_id!r} is not in the patients table.", path=name)
    row = hit.row(0, named=True)
    return row, f"{name} row {row.pop('__row') + 1}"


def explain_rule(rs, rule_id: str, patient: dict | None = None, where: str = "") -> str:
    """Plain text describing one rule as loaded (site overrides applied); with ``patient`` (a
    row of the patients table, named ``where``), the values that patient gets."""
    pack, r = rs.find_rule(rule_id)
    lines = [f"{r.id} — {r.title}",
             f"  pack       {pack.name} {pack.version} ({pack.path})",
             f"  defined at {r.origin}",
             f"  severity   {r.severity}   (set at {r.severity_origin})"]
    if not r.enabled:
        lines.append(f"  DISABLED   (at {r.enabled_origin})")
    lines += _scope(pack)
    lines += [f"  when       {r.when}"]
    if r.resolve_when:
        lines.append(f"  resolves   when {r.resolve_when} (instead of when `when` stops "
                     "holding)")
    lines.append(f"  timing     {_durations(r)}")
    if r.labels:
        lines.append("  labels     " + ", ".join(f"{k}: {v}" for k, v in r.labels.items()))
    if len(r.titles) > 1:
        lines += _texts("title", r.titles)
    if len(r.reasons) > 1:
        lines += _texts("reason", r.reasons)
    elif r.reason:
        lines.append(f"  reason     {r.reason}")
    conds = [c for c in pack.conditions if c.name in r.reads]
    if conds:
        lines.append("  conditions")
        lines.extend(f"    {c.name}: {c.text}   (at {c.origin})" for c in conds)
    if r.params:
        lines.append("  params")
        for p in r.params.values():
            derived = f" = {p.text}" if p.depends else ""
            lines.append(f"    {p.name} = {p.display()}{derived}   from {p.source} at {p.origin}")
            if p.patient:
                lines.append(f"        set per patient by the care plan column {p.patient} "
                             "of the patients table, when given")
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
    others = [n for n in r.reads
              if pack.symbols[n].kind in ("metric", "score", "patient", "time", "model")]
    if others:
        lines.append("  also reads")
        for n in others:
            s = pack.symbols[n]
            stale = pack.staleness_us.get(n)
            extra = f"; staleness {format_duration(stale)}" if stale else ""
            lines.append(f"    {n}: {s.kind}, {s.doc}{extra}")
    if patient is not None:
        lines += _for_patient(pack, r, patient, where)
    if r.rationale:
        lines.append("  rationale")
        lines.extend(f"    {line}" for line in r.rationale.strip().splitlines())
    if r.references:
        lines.append("  references")
        lines.extend(f"    - {ref}" for ref in r.references)
    return "\n".join(lines)


def _for_patient(pack, r: CompiledRule, patient: dict, where: str) -> list[str]:
    """The lines of ``explain --patient``: the values of this patient, and where they come
    from."""
    from ..timeline import in_scope
    import polars as pl

    lines = [f"  for patient {patient['patient_id']} ({where})"]
    context = pl.DataFrame([{k: patient.get(k) for k in ("programme", "age")}],
                           schema={"programme": pl.String, "age": pl.Int64})
    inside = bool(in_scope(pack, context)[0])
    lines.append(f"    in the pack's scope: {'yes' if inside else 'no'} (programme "
                 f"{patient.get('programme')}, age {format_value(patient.get('age'), '')})")
    for p in r.params.values():
        if p.patient:
            lines.append(_patient_value(p, patient, where))
    for n in r.reads:
        sym = pack.symbols[n]
        if sym.kind == "patient":
            unit = sym.type.unit.label if sym.type.kind == "number" and sym.type.unit else ""
            lines.append(f"    {n} = {format_value(patient.get(n), unit)}   ({where})")
    if any(n in r.reads for n in ("hour_of_day", "day_of_week")):
        zone, source = patient.get("tz"), f"column tz of {where}"
        if zone is None:
            zone = pack.time_zone or "UTC"
            source = ("the site's time_zone" if pack.time_zone else
                      "UTC: no tz for this patient and no site time_zone")
        lines.append(f"    local time in {zone}   ({source})")
    for n, field in (("since_enrolment", "enrolled_at"), ("since_surgery", "surgery_at")):
        if n in r.reads:
            at = patient.get(field)
            lines.append(f"    {n} counts from {field} = "
                         f"{at.isoformat() if at is not None else 'unknown'}   ({where})")
    return lines
