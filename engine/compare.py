"""Compare two versions of the rules on one labelled cohort: what a change does, alert by alert.

``veille backtest --compare OTHER`` scores the cohort with the rules as given (A) and with the
other version (B): OTHER is a site override file (B = A's packs and sites, then OTHER) or
rule packs (a pack file or a folder: B = A's packs with each pack OTHER holds replaced by
OTHER's version of it, and OTHER's new packs added; A's site overrides apply to both).

:func:`compare` returns the two backtest tables side by side, the alerts gained and lost (an
alert is its patient, rule and opening time: an alert that moves an hour earlier is one lost
and one gained), each with the labelled event it falls in the window of, and the labelled
events newly detected or missed.
"""
from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .backtest import matches
from .errors import InputError
from .labelled import LabelledCohort, Scored, score
from .paths import bundled
from .pipeline import Engine

KEY = ("patient_id", "rule_id", "opened_at")
#: the table columns shown side by side (the others describe the cohort, not the rules)
COMPARED = ("episodes", "alerts_per_100_pd", "patients_alerted", "events", "detected",
            "sensitivity", "detected_24h", "ppv", "median_lead_h", "lead_q1_h", "lead_q3_h",
            "alerts_per_nurse_day")


def is_site_file(path: str | Path) -> bool:
    """Does ``path`` hold a site override (a YAML file with a top-level ``site:``)?"""
    from .ruleset.format.diagnostics import Diagnostics
    from .ruleset.format.source import read_source

    p = Path(path)
    if not p.is_file():
        return False
    src = read_source(p, Diagnostics())
    return src is not None and isinstance(src.data, dict) and "site" in src.data


def other_version(rules, sites, other: str | Path) -> tuple[list, list]:
    """The rule paths and site files of version B (see the module docstring)."""
    from .ruleset import load_rules

    other = Path(other)
    if not other.exists():
        raise InputError("file or folder not found (--compare takes a site override file, a "
                         "rule pack or a folder of packs).", path=str(other))
    rules = list(rules) or [bundled("rules")]
    if is_site_file(other):
        return rules, [*sites, other]
    theirs = load_rules(other)
    replaced = {p.name for p in theirs.packs}
    mine = load_rules(rules)
    kept = [Path(p.path) for p in mine.packs if p.name not in replaced]
    return kept + [Path(p.path) for p in theirs.packs], list(sites)


@dataclass
class Comparison:
    """``table``: per level, pack and rule, each of :data:`COMPARED` for A and B (suffixes
    ``_a``, ``_b``); ``alerts``: ``change`` (gained, lost), the alert's patient, pack, rule,
    severity and opening time, and the labelled event it falls in the window of (null when
    none); ``events``: the labelled events detected by one version only (``change``:
    detected, missed — by B), with each version's lead time."""

    a: Scored
    b: Scored
    table: pl.DataFrame
    alerts: pl.DataFrame
    events: pl.DataFrame


def compare(cohort: LabelledCohort, a: Engine, b: Engine, *,
            window: dt.timedelta | None = None, nurses: float = 1.0) -> Comparison:
    """Score ``cohort`` with both engines (two at a time) and compare them."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        fa, fb = (pool.submit(score, cohort, e, window=window, nurses=nurses) for e in (a, b))
        sa, sb = fa.result(), fb.result()
    return Comparison(sa, sb, side_by_side(sa.table, sb.table),
                      *changes(sa.result.episodes, sb.result.episodes, cohort.events, window))


def side_by_side(ta: pl.DataFrame, tb: pl.DataFrame) -> pl.DataFrame:
    """The two backtest tables joined on (level, pack, rule_id), A's then B's order."""
    keys = ["level", "pack", "rule_id"]
    order = pl.concat([ta.select(keys), tb.select(keys)]).unique(keys, maintain_order=True) \
        .with_row_index("_order")
    out = order
    for table, suffix in ((ta, "_a"), (tb, "_b")):
        out = out.join(table.select(*keys, *(pl.col(c).alias(c + suffix) for c in COMPARED)),
                       on=keys, how="left", nulls_equal=True)
    return out.sort("_order").drop("_order")


def changes(ea: pl.DataFrame, eb: pl.DataFrame, events: pl.DataFrame,
            window: dt.timedelta | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(alerts gained and lost, events newly detected or missed) from A's to B's episodes."""
    tagged = []
    for ep in (ea, eb):
        windows, hits, matched = matches(ep, events, window)
        ev = windows.unique("event_idx").select("event_idx", "event_type", "event_time")
        tagged.append((ep.select(*KEY, "pack", "severity")
                       .with_columns(matched["event_idx"])
                       .join(ev, on="event_idx", how="left"),
                       hits.group_by("event_idx").agg(pl.col("first_alert").min())
                       .filter(pl.col("first_alert").is_not_null())))
    (ta, ha), (tb, hb) = tagged
    cols = ["change", "patient_id", "pack", "rule_id", "severity", "opened_at", "event_type",
            "event_time"]
    gained = tb.join(ta, on=list(KEY), how="anti").with_columns(change=pl.lit("gained"))
    lost = ta.join(tb, on=list(KEY), how="anti").with_columns(change=pl.lit("lost"))
    alerts = pl.concat([gained.select(cols), lost.select(cols)]) \
        .sort("patient_id", "opened_at", "rule_id", "change")
    ev_all = events.with_row_index("event_idx")
    both = (ha.select("event_idx", first_a="first_alert")
            .join(hb.select("event_idx", first_b="first_alert"), on="event_idx", how="full",
                  coalesce=True)
            .join(ev_all, on="event_idx", how="left"))
    lead_a = ((pl.col("event_time") - pl.col("first_a")).dt.total_seconds() / 3600.0)
    lead_b = ((pl.col("event_time") - pl.col("first_b")).dt.total_seconds() / 3600.0)
    diff = (both.filter(pl.col("first_a").is_null() | pl.col("first_b").is_null())
            .with_columns(change=pl.when(pl.col("first_b").is_null()).then(pl.lit("missed"))
                          .otherwise(pl.lit("detected")),
                          lead_a_h=lead_a, lead_b_h=lead_b)
            .select("change", "patient_id", "event_type", "event_time", "lead_a_h",
                    "lead_b_h")
            .sort("patient_id", "event_time"))
    return alerts, diff

