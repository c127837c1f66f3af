"""Backtest: how well each rule pack detects the labelled episodes of a cohort.

For every labelled event (``events.parquet`` of :mod:`engine.synth`, or a site's own adjudicated
events with the same columns) the packs that are meant to catch it are listed in
:data:`EVENT_PACKS`. An event is **detected** by a pack when the patient has an episode of that
pack opened inside the event's detection window:

* ``[onset, event_time]`` for events with a prodrome (an alert before the event is early
  detection; one after it is too late to count);
* ``[event_time, event_time + 24 h]`` for events without one (``onset == event_time``: a fall is
  detected by the report of the fall).

Per pack the table gives the sensitivity (detected / events), the median lead time
(``event_time`` minus the first alert in the window; positive = before the event), the events
caught at the latest within 24 h after the event (``detected_24h``: a CGM hypoglycaemia event
is labelled at its nadir, and the consensus needs 15 minutes below the level, so its alert
comes minutes after), the alert burden (episodes per 100 patient-days over the patients in the
pack's scope) and the share of episodes that fall in no window of a matching event, extended by
those 24 h (a proxy of false alerts: the synthetic cohort labels every episode it injects, so an
unmatched alert is noise-driven).
"""
from __future__ import annotations

import datetime as dt

import polars as pl

from .timeline import in_scope

#: event type -> packs expected to detect it
EVENT_PACKS: dict[str, tuple[str, ...]] = {
    "hf_decompensation": ("heart_failure",),
    "copd_exacerbation": ("copd", "news2"),
    "covid_deterioration": ("covid_home", "news2"),
    "hypoglycaemia_severe": ("diabetes",),
    "hyperglycaemia": ("diabetes",),
    "cpap_nonadherence": ("sleep_apnoea",),
    "excess_weight_loss": ("post_bariatric",),
    "malnutrition": ("malnutrition_older",),
    "functional_decline": ("home_autonomy", "icope"),
    "fall": ("home_autonomy",),
    "device_silence": ("device_silence",),
}
NO_PRODROME_GRACE = dt.timedelta(hours=24)
#: alerts this long after the event are attributed to it (late, but not false)
LATE_GRACE = dt.timedelta(hours=24)

EVENT_COLUMNS = ("patient_id", "event_type", "onset", "event_time")


def load_events(source, *, tz: str | None = None, skip_unknown: bool = False,
                name: str | None = None, any_type: bool = False
                ) -> tuple[pl.DataFrame, dict[str, int]]:
    """Read and check a labelled-events table; returns the events and the count of each event
    type no pack is meant to detect (dropped only with ``skip_unknown``).

    Columns: ``patient_id``, ``event_type`` (one of :data:`EVENT_PACKS`), ``onset`` and
    ``event_time`` (timestamps, or ISO text read in ``tz`` when it has no offset). With
    ``any_type`` every event type is kept (training the risk model on a site's own labels).
    """
    from .errors import InputError
    from .ingest import check_zone
    from .ingest.times import OK, to_utc_us
    from .sources import read_table

    label = name or (str(source) if not isinstance(source, pl.DataFrame) else "<events>")
    raw = read_table(source, what="events")
    missing = [c for c in EVENT_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(f"the events table is missing column(s) {', '.join(missing)}; it needs "
                         f"{', '.join(EVENT_COLUMNS)}; found: {', '.join(raw.columns)}.",
                         path=label, column=missing[0])
    if tz is not None:
        check_zone(tz)
    out = {"patient_id": raw["patient_id"].cast(pl.String).str.strip_chars(),
           "event_type": raw["event_type"].cast(pl.String).str.strip_chars()}
    for col in ("onset", "event_time"):
        if not (raw[col].dtype == pl.String or isinstance(raw[col].dtype, pl.Datetime)):
            raise InputError(f"has type {raw[col].dtype}; expected a timestamp or ISO-8601 "
                             "text.", path=label, column=col)
        us, flag = to_utc_us(raw[col], tz)
        bad = flag != OK
        if bad.any():
            i = int(bad.argmax())
            hint = " (no time zone: give --tz)" if raw[col].dtype == pl.String else ""
            raise InputError(f"{raw[col][i]!r} is not a usable time{hint}.", path=label,
                             row=i + 1, column=col)
        out[col] = pl.Series(us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    events = pl.DataFrame(out).with_columns(
        *(raw[c].cast(pl.String).alias(c) for c in ("severity", "programme")
          if c in raw.columns))
    counts = events.group_by("event_type").len()
    unknown = {t: n for t, n in counts.iter_rows() if t not in EVENT_PACKS}
    if any_type:
        return events, unknown
    if unknown and not skip_unknown:
        listed = ", ".join(f"'{t}' ({n} events)" for t, n in sorted(unknown.items()))
        raise InputError(f"event type(s) {listed} are not known: no pack is meant to detect "
                         f"them, so they would count as neither caught nor missed. Known types: "
                         f"{', '.join(EVENT_PACKS)}. Rename them to these, or pass "
                         "--skip-unknown-events to leave them out (they are then listed).",
                         path=label, column="event_type")
    return events.filter(pl.col("event_type").is_in(list(EVENT_PACKS))), unknown


BACKTEST_COLUMNS = ("pack", "events", "detected", "sensitivity", "median_lead_h",
                    "detected_24h", "episodes", "patient_days", "alerts_per_100_pd",
                    "unmatched_share")


def detection_windows(events: pl.DataFrame) -> pl.DataFrame:
    """One row per (event, pack expected to detect it) with the window [win_start, win_end]."""
    pairs = pl.DataFrame([(e, p) for e, ps in EVENT_PACKS.items() for p in ps],
                         schema={"event_type": pl.String, "pack": pl.String}, orient="row")
    ev = events.with_row_index("event_idx").join(pairs, on="event_type", how="inner")
    no_prodrome = pl.col("onset") >= pl.col("event_time")
    return ev.with_columns(
        win_start=pl.when(no_prodrome).then(pl.col("event_time")).otherwise(pl.col("onset")),
        win_end=pl.when(no_prodrome).then(pl.col("event_time") + NO_PRODROME_GRACE)
        .otherwise(pl.col("event_time")),
    )


def patient_days(telemetry: pl.DataFrame, patients: pl.DataFrame | None) -> pl.DataFrame:
    """Follow-up per patient in days: from enrolment (or the first reading) to the last reading."""
    span = telemetry.group_by("patient_id").agg(pl.col("ts").min().alias("first"),
                                                pl.col("ts").max().alias("last"))
    if patients is not None and "enrolled_at" in patients.columns:
        span = span.join(patients.select("patient_id", "enrolled_at"), on="patient_id",
                         how="left").with_columns(
            first=pl.min_horizontal("first", pl.col("enrolled_at").fill_null(pl.col("first"))))
    return span.select("patient_id", days=(pl.col("last") - pl.col("first"))
                       .dt.total_seconds() / 86400.0)


def backtest(episodes: pl.DataFrame, events: pl.DataFrame, telemetry: pl.DataFrame,
             patients: pl.DataFrame, packs) -> pl.DataFrame:
    """Per-pack detection table (see the module docstring for every column's definition)."""
    windows = detection_windows(events)
    ep = episodes.select("patient_id", "pack", "rule_id", "opened_at")
    hits = (windows.join(ep, on=["patient_id", "pack"], how="inner")
            .filter(pl.col("opened_at").is_between(pl.col("win_start"), pl.col("win_end")))
            .group_by("event_idx", "pack")
            .agg(pl.col("opened_at").min().alias("first_alert"), pl.col("event_time").first()))
    late = (windows.join(ep, on=["patient_id", "pack"], how="inner")
            .filter(pl.col("opened_at").is_between(pl.col("win_start"),
                                                   pl.col("win_end") + LATE_GRACE))
            .select("event_idx", "pack").unique().with_columns(late_hit=pl.lit(True)))
    per_event = (windows.join(hits.drop("event_time"), on=["event_idx", "pack"], how="left")
                 .join(late, on=["event_idx", "pack"], how="left"))
    matched = (ep.with_row_index("ep_idx")
               .join(windows.select("patient_id", "pack", "win_start", "win_end"),
                     on=["patient_id", "pack"], how="inner")
               .filter(pl.col("opened_at").is_between(pl.col("win_start"),
                                                      pl.col("win_end") + LATE_GRACE))
               .select("ep_idx").unique())
    ep = ep.with_row_index("ep_idx").with_columns(
        matched=pl.col("ep_idx").is_in(matched["ep_idx"].implode()))
    days = patient_days(telemetry, patients)
    rows = []
    for pack in packs:
        # the rule engine's own scope test, so the denominator is exactly who the pack watched
        ids = patients.filter(pl.Series(in_scope(pack, patients)))["patient_id"]
        pd_ = float(days.filter(pl.col("patient_id").is_in(ids.implode()))["days"].sum())
        ev = per_event.filter(pl.col("pack") == pack.name)
        det = ev.filter(pl.col("first_alert").is_not_null())
        lead = (det["event_time"] - det["first_alert"]).dt.total_seconds() / 3600.0
        eps = ep.filter(pl.col("pack") == pack.name)
        rows.append({
            "pack": pack.name,
            "events": ev.height,
            "detected": det.height,
            "sensitivity": det.height / ev.height if ev.height else None,
            "median_lead_h": float(lead.median()) if det.height else None,
            "detected_24h": int(ev["late_hit"].fill_null(False).sum()),
            "episodes": eps.height,
            "patient_days": round(pd_, 1),
            "alerts_per_100_pd": 100.0 * eps.height / pd_ if pd_ else None,
            "unmatched_share": float((~eps["matched"]).mean()) if eps.height else None,
        })
    return pl.DataFrame(rows, schema={
        "pack": pl.String, "events": pl.Int64, "detected": pl.Int64, "sensitivity": pl.Float64,
        "median_lead_h": pl.Float64, "detected_24h": pl.Int64, "episodes": pl.Int64, "patient_days": pl.Float64,
        "alerts_per_100_pd": pl.Float64, "unmatched_share": pl.Float64}).sort("pack")


def to_markdown(table: pl.DataFrame) -> str:
    """The backtest table as Markdown (for the README)."""
    head = ("| pack | events | detected early | sensitivity | median lead time | "
            "detected by event + 24 h | episodes | alerts / 100 patient-days | "
            "alerts outside any labelled episode |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def pct(v):
        return "–" if v is None else f"{100 * v:.0f} %"

    for r in table.iter_rows(named=True):
        lead = "–" if r["median_lead_h"] is None else f"{r['median_lead_h']:.1f} h"
        rate = "–" if r["alerts_per_100_pd"] is None else f"{r['alerts_per_100_pd']:.2f}"
        lines.append(f"| {r['pack']} | {r['events']} | {r['detected']} | {pct(r['sensitivity'])} "
                     f"| {lead} | {r['detected_24h']} | {r['episodes']} | {rate} "
                     f"| {pct(r['unmatched_share'])} |")
    return "\n".join(lines)


def hygiene_effect(queue: pl.DataFrame, events: pl.DataFrame, telemetry: pl.DataFrame,
                   patients: pl.DataFrame | None) -> dict:
    """What alert hygiene does on a labelled cohort, from a queue with hygiene on
    (:data:`engine.hygiene.HYGIENE_COLUMNS`).

    Returns ``patient_days``; ``off`` and ``on``, alerts per 100 patient-days reaching the
    queue without and with hygiene (every alert; those with no ``suppressed_by``); ``events``
    and ``caught_off`` / ``caught_on``, the labelled events an alert of an expected pack opened
    for, in the detection window extended by :data:`LATE_GRACE` (an alert merged into a
    flapping entry counts: the entry is in the queue); and ``lost``, a frame of the events
    caught without hygiene and not with it, with the reasons their alerts were hidden.
    """
    windows = detection_windows(events)
    ep = queue.select("patient_id", "pack", "opened_at", "suppressed_by")
    hits = (windows.join(ep, on=["patient_id", "pack"], how="inner")
            .filter(pl.col("opened_at").is_between(pl.col("win_start"),
                                                   pl.col("win_end") + LATE_GRACE)))
    delivered = pl.col("suppressed_by").is_null() | pl.col("suppressed_by").str.starts_with(
        "flapping:")
    per_event = hits.group_by("event_idx").agg(
        on=delivered.any(), reasons=pl.col("suppressed_by").drop_nulls().unique().sort())
    lost = (per_event.filter(~pl.col("on"))
            .join(windows.unique("event_idx"), on="event_idx", how="left")
            .select("patient_id", "event_type", "event_time", "reasons").sort("event_time"))
    days = float(patient_days(telemetry, patients)["days"].sum())
    shown = int(queue["suppressed_by"].is_null().sum())
    return {"patient_days": days, "alerts_off": queue.height, "alerts_on": shown,
            "off": 100.0 * queue.height / days, "on": 100.0 * shown / days,
            "events": int(events.height), "caught_off": per_event.height,
            "caught_on": int(per_event["on"].sum()), "lost": lost}
