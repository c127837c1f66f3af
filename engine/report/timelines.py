"""What a patient's timeline shows: the vitals and detector outputs their rules compare with a
param, the param's value for that patient as the threshold, their alerts, events and risk."""
from __future__ import annotations

import dataclasses

import polars as pl

from ..detect import DetectorPlan, detect
from ..schema import CARE_PLAN, METRICS
from ..timeline import in_scope, timelines
from ..units import UNITS
from .plots import Panel, Plot, timeline_plot
from .text import words

#: panels per patient at most (vitals and detectors), the rules that fired first
MAX_PANELS = 5
_COMPARISONS = {"<", "<=", ">", ">="}


def compared(node) -> list[tuple[str, str]]:
    """``(name, other name)`` of every comparison between two names in a rule's syntax tree,
    both ways round (``weight_gain_3d > gain_3d`` gives both pairs)."""
    out = []
    if dataclasses.is_dataclass(node):
        left, right = getattr(node, "left", None), getattr(node, "right", None)
        if getattr(node, "op", None) in _COMPARISONS and hasattr(left, "name") \
                and hasattr(right, "name"):
            out += [(left.name, right.name), (right.name, left.name)]
        for f in dataclasses.fields(node):
            out += compared(getattr(node, f.name))
    elif isinstance(node, (list, tuple)):
        for item in node:
            out += compared(item)
    return out


def top_of_queue(queue: pl.DataFrame, episodes: pl.DataFrame, n: int) -> list[str]:
    """The first ``n`` patients of the open queue (by priority), then those with most alerts."""
    ids: list[str] = []
    if queue.height and "priority" in queue.columns:
        ranked = queue.filter(pl.col("priority").is_not_null()).sort("priority")
        ids = list(dict.fromkeys(ranked["patient_id"].to_list()))
    more = episodes.group_by("patient_id").len().sort(["len", "patient_id"],
                                                      descending=[True, False])
    ids += [p for p in more["patient_id"].to_list() if p not in ids]
    return ids[:n]


def _param_value(prm, row: dict) -> float:
    if prm.patient and row.get(prm.patient) is not None:
        return float(row[prm.patient]) * prm.type.unit.ratio(UNITS[CARE_PLAN[prm.patient].unit])
    return float(prm.value)


def patient_plot(pid: str, result, ruleset, events: pl.DataFrame, key: str,
                 lang: str) -> Plot:
    """The timeline figure of patient ``pid`` from a scored run (:class:`engine.pipeline.Result`)."""
    w = words(lang)
    pats = result.patients
    row_frame = pats.filter(pl.col("patient_id") == pid)
    row = row_frame.row(0, named=True) if row_frame.height else {"programme": None}
    tel = result.clean.filter(pl.col("patient_id") == pid)
    eps = result.episodes.filter(pl.col("patient_id") == pid)
    evs = events.filter(pl.col("patient_id") == pid)
    packs = [p for p in ruleset.packs if row_frame.height and in_scope(p, row_frame)[0]
             and any(r.enabled for r in p.rules)]
    tls = {}
    if tel.height and packs:
        det = detect(tel, DetectorPlan.of(packs))
        tls = timelines(det, row_frame, packs, until=result.as_of)
    fired = set(eps["rule_id"].to_list())
    rules = sorted(((p, r) for p in packs for r in p.rules if r.enabled),
                   key=lambda pr: (pr[1].id not in fired, pr[1].id))
    panels: dict[str, Panel] = {}
    for pack, rule in rules:
        for name, other in compared(rule.node):
            if other not in rule.params or len(panels) >= MAX_PANELS and name not in panels:
                continue
            panel = panels.get(f"{pack.name}.{name}") or _panel(name, pack, tel, tls)
            if panel is None:
                continue
            value = _param_value(rule.params[other], row)
            if (other, value) not in panel.thresholds:
                panel.thresholds.append((other, value))
            panels[f"{pack.name}.{name}"] = panel
    span = (min([t for t in (tel["ts"].min(), evs["onset"].min()) if t is not None],
                default=result.as_of), result.as_of)
    risk = None
    if result.risk is not None:
        risk = result.risk.filter(pl.col("patient_id") == pid)
    if eps.height:
        caption = w["episodes_of"].format(rules=", ".join(
            f"{r['rule_id']} ({r['opened_at']:%d/%m %H:%M})" for r in eps.iter_rows(named=True)))
    else:
        caption = w["no_alert"]
    caption += " " + (w["events_of"].format(events=", ".join(
        f"{r['event_type']} ({r['event_time']:%d/%m %H:%M})" for r in evs.iter_rows(named=True)))
        if evs.height else w["no_event"])
    title = w["patient"].format(pid=pid, programme=row.get("programme") or "–")
    return timeline_plot(key, list(panels.values()), eps, evs, risk, span,
                         f"{title}. {caption}", lang)


def _panel(name: str, pack, tel: pl.DataFrame, tls: dict) -> Panel | None:
    """The series of ``name`` (a metric's readings, or a detector's values on the pack's
    timeline) for one patient; None when it has none."""
    if name in METRICS:
        frame = tel.filter(pl.col("metric") == name).select("ts", "value")
        return Panel(name, METRICS[name].unit, frame, []) if frame.height else None
    use = pack.detectors.get(name)
    if use is None or pack.name not in tls:
        return None
    tl = tls[pack.name].frame()
    if use.column not in tl.columns:
        return None
    frame = tl.select("ts", pl.col(use.column).cast(pl.Float64).alias("value")).drop_nulls()
    unit = use.type.unit.label if use.type.unit is not None else ""
    return Panel(name, unit, frame, []) if frame.height else None
