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
#: the complete table (:func:`backtest_table`): one row per rule, per pack and for all packs
TABLE_SCHEMA = {
    "level": pl.String, "pack": pl.String, "rule_id": pl.String,
    "patients": pl.Int64, "patients_alerted": pl.Int64, "patient_share": pl.Float64,
    "patient_days": pl.Float64, "episodes": pl.Int64, "alerts_per_100_pd": pl.Float64,
    "events": pl.Int64, "detected": pl.Int64, "sensitivity": pl.Float64,
    "detected_24h": pl.Int64, "ppv": pl.Float64, "unmatched_share": pl.Float64,
    "median_lead_h": pl.Float64, "lead_q1_h": pl.Float64, "lead_q3_h": pl.Float64,
    "alerts_per_nurse_day": pl.Float64,
}
#: the ``level`` of the table's rows, in the order they come
LEVELS = ("all", "pack", "rule")


def detection_windows(events: pl.DataFrame, window: dt.timedelta | None = None
                      ) -> pl.DataFrame:
    """One row per (event, pack expected to detect it) with the window [win_start, win_end].

    ``window`` None: an event with a prodrome is detected from its labelled ``onset``; a
    duration W: from ``event_time - W`` (the same look-back for every event, whatever its
    label says). An event without a prodrome is detected within 24 h after it either way.
    """
    pairs = pl.DataFrame([(e, p) for e, ps in EVENT_PACKS.items() for p in ps],
                         schema={"event_type": pl.String, "pack": pl.String}, orient="row")
    ev = events.with_row_index("event_idx").join(pairs, on="event_type", how="inner")
    no_prodrome = pl.col("onset") >= pl.col("event_time")
    start = pl.col("onset") if window is None else pl.col("event_time") - window
    return ev.with_columns(
        win_start=pl.when(no_prodrome).then(pl.col("event_time")).otherwise(start),
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


def cohort_days(telemetry: pl.DataFrame) -> float:
    """Calendar days the cohort spans, first reading to last: the days a team works it."""
    first, last = telemetry["ts"].min(), telemetry["ts"].max()
    return 0.0 if first is None else (last - first).total_seconds() / 86400.0


def matches(episodes: pl.DataFrame, events: pl.DataFrame,
            window: dt.timedelta | None = None
            ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """How alerts and labelled events meet.

    Returns the detection windows (:func:`detection_windows`); ``hits``, one row per (event, pack expected to detect it, rule of that pack that
    opened an episode in the window extended by :data:`LATE_GRACE`): ``event_idx``,
    ``patient_id``, ``event_type``, ``event_time``, ``pack``, ``rule_id``, ``first_alert`` (the
    rule's first opening in the detection window, null when it only came late) and ``late``
    (an opening within the extended window); and the episodes with ``matched`` (opened in
    the extended window of an event their pack is meant to detect) and ``event_idx`` (the first
    such event, null when none).
    """
    windows = detection_windows(events, window)
    ep = episodes.select("patient_id", "pack", "rule_id", "opened_at").with_row_index("ep_idx")
    pairs = (windows.join(ep, on=["patient_id", "pack"], how="inner")
             .filter(pl.col("opened_at").is_between(pl.col("win_start"),
                                                    pl.col("win_end") + LATE_GRACE)))
    in_window = pl.col("opened_at") <= pl.col("win_end")
    hits = (pairs.group_by("event_idx", "pack", "rule_id")
            .agg(pl.col("patient_id", "event_type", "event_time").first(),
                 pl.col("opened_at").filter(in_window).min().alias("first_alert"),
                 pl.lit(True).alias("late"))
            .sort("event_idx", "pack", "rule_id"))
    first = pairs.sort("event_time").group_by("ep_idx").agg(pl.col("event_idx").first())
    matched = (ep.join(first, on="ep_idx", how="left")
               .with_columns(matched=pl.col("event_idx").is_not_null())
               .sort("ep_idx").drop("ep_idx"))
    return windows, hits, matched


def backtest_table(episodes: pl.DataFrame, events: pl.DataFrame, telemetry: pl.DataFrame,
                   patients: pl.DataFrame, packs, *, window: dt.timedelta | None = None,
                   nurses: float = 1.0, levels=LEVELS,
                   days: pl.DataFrame | None = None) -> pl.DataFrame:
    """The complete backtest: one row for all packs together, one per pack, one per rule.

    Columns (:data:`TABLE_SCHEMA`):

    * ``patients``: patients in the pack's scope (all: in any pack's scope);
      ``patients_alerted`` of them with at least one episode, ``patient_share`` the share;
    * ``patient_days``: their follow-up (:func:`patient_days`); ``episodes`` (alerts) and
      ``alerts_per_100_pd``: episodes per 100 patient-days;
    * ``events``: labelled events the pack is meant to detect (:data:`EVENT_PACKS`; a rule
      counts its pack's events, all packs every event once); ``detected``: those with an
      episode opened in the detection window (:func:`detection_windows`, ``window``);
      ``sensitivity`` = detected / events; ``detected_24h``: with one by the window's end + 24 h;
    * ``ppv``: the share of episodes opened in the window (+ 24 h) of a labelled event their
      pack is meant to detect — the positive predictive value; ``unmatched_share`` = 1 - ppv;
    * ``median_lead_h``, ``lead_q1_h``, ``lead_q3_h``: the median and quartiles of the lead
      time of the detected events, event time minus the first alert in the window (hours,
      positive = before the event);
    * ``alerts_per_nurse_day``: episodes / (``nurses`` × the calendar days the cohort spans):
      the calls each nurse of a team of that size makes per day.

    Rows with no event or no episode leave the ratios null, never 0 or NaN. ``levels`` keeps
    some of :data:`LEVELS`; ``days`` is :func:`patient_days` when the caller has it already.
    """
    if not nurses or nurses <= 0:
        raise ValueError(f"nurses must be a positive number. Got {nurses!r} instead.")
    windows, hits, eps = matches(episodes, events, window)
    days = patient_days(telemetry, patients) if days is None else days
    team_days = nurses * cohort_days(telemetry)
    scope = {p.name: patients.filter(pl.Series(in_scope(p, patients)))["patient_id"]
             for p in packs}
    packs_of = {p.name: [r.id for r in p.rules if getattr(r, "enabled", True)]
                if hasattr(p, "rules") else [] for p in packs}
    # rules that opened an episode count even when the pack object does not list them
    for pack, rule in eps.select("pack", "rule_id").unique().sort("pack", "rule_id").iter_rows():
        if pack in packs_of and rule not in packs_of[pack]:
            packs_of[pack].append(rule)
    everyone = pl.concat([s for s in scope.values()]).unique() if scope else \
        pl.Series("patient_id", [], pl.String)
    rows = [_row("all", None, None, everyone, days,
                 eps.filter(pl.col("pack").is_in(list(scope))),
                 windows.filter(pl.col("pack").is_in(list(scope))).unique("event_idx"),
                 hits.filter(pl.col("pack").is_in(list(scope))), team_days)] \
        if "all" in levels else []
    for pack in sorted(scope) if {"pack", "rule"} & set(levels) else ():
        ev = windows.filter(pl.col("pack") == pack)
        if "pack" in levels:
            rows.append(_row("pack", pack, None, scope[pack], days,
                             eps.filter(pl.col("pack") == pack), ev,
                             hits.filter(pl.col("pack") == pack), team_days))
        for rule in sorted(packs_of[pack]) if "rule" in levels else ():
            rows.append(_row("rule", pack, rule, scope[pack], days,
                             eps.filter(pl.col("rule_id") == rule), ev,
                             hits.filter(pl.col("rule_id") == rule), team_days))
    return pl.DataFrame(rows, schema=TABLE_SCHEMA, orient="row")


def _row(level, pack, rule, ids, days, eps, ev, hits, team_days) -> tuple:
    """One line of :func:`backtest_table`: ``ev`` the events counted (one row each), ``hits``
    the matching openings (:func:`matches`), ``eps`` the episodes counted."""
    pd_ = float(days.filter(pl.col("patient_id").is_in(ids.implode()))["days"].sum())
    per_event = (hits.group_by("event_idx")
                 .agg(pl.col("first_alert").min(), pl.col("event_time").first()))
    det = per_event.filter(pl.col("first_alert").is_not_null())
    lead = ((det["event_time"] - det["first_alert"]).dt.total_seconds() / 3600.0)
    alerted = eps.filter(pl.col("patient_id").is_in(ids.implode()))["patient_id"].n_unique()
    n_ev, n_det, n_ep = ev.height, det.height, eps.height

    def q(x):
        return float(lead.quantile(x, "linear")) if n_det else None

    return (level, pack, rule, ids.len(), alerted, alerted / ids.len() if ids.len() else None,
            round(pd_, 1), n_ep, 100.0 * n_ep / pd_ if pd_ else None,
            n_ev, n_det, n_det / n_ev if n_ev else None, per_event.height,
            float(eps["matched"].mean()) if n_ep else None,
            float((~eps["matched"]).mean()) if n_ep else None,
            q(0.5), q(0.25), q(0.75), n_ep / team_days if team_days else None)


def backtest(episodes: pl.DataFrame, events: pl.DataFrame, telemetry: pl.DataFrame,
             patients: pl.DataFrame, packs) -> pl.DataFrame:
    """The per-pack detection table of :data:`BACKTEST_COLUMNS` (the pack rows of
    :func:`backtest_table`, labelled onsets as windows)."""
    return (backtest_table(episodes, events, telemetry, patients, packs)
            .filter(pl.col("level") == "pack").select(BACKTEST_COLUMNS))


def to_markdown(table: pl.DataFrame) -> str:
    """The backtest table as Markdown (for the README): per pack, or the complete table of
    :func:`backtest_table` (all packs, per pack, then per rule)."""
    if "level" not in table.columns:
        return _evidence_markdown(table)
    out = []
    for level, title in (("pack", "pack"), ("rule", "rule")):
        rows = table.filter(pl.col("level").is_in(["all", "pack"] if level == "pack"
                                                   else ["rule"]))
        head = (f"| {title} | events | detected early | sensitivity | lead time, median (IQR) "
                "| detected by event + 24 h | alerts | alerts / 100 patient-days "
                "| patients alerted | PPV | alerts per nurse-day |")
        lines = [head, "|---|" + "---:|" * 10]
        for r in rows.iter_rows(named=True):
            name = {"all": "**all packs**", "pack": r["pack"]}.get(r["level"], r["rule_id"])
            lines.append(f"| {name} | {r['events']} | {r['detected']} | {_pct(r['sensitivity'])} "
                         f"| {lead_text(r)} | {r['detected_24h']} | {r['episodes']} "
                         f"| {_num(r['alerts_per_100_pd'], 2)} "
                         f"| {r['patients_alerted']} of {r['patients']} "
                         f"| {_pct(r['ppv'])} | {_num(r['alerts_per_nurse_day'], 2)} |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def lead_text(r: dict) -> str:
    """``46.1 h (20.3–70.0)``: a row's median lead time and interquartile range."""
    if r["median_lead_h"] is None:
        return "–"
    return f"{r['median_lead_h']:.1f} h ({r['lead_q1_h']:.1f}–{r['lead_q3_h']:.1f})"


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def _num(v, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _evidence_markdown(table: pl.DataFrame) -> str:
    head = ("| pack | events | detected early | sensitivity | median lead time | "
            "detected by event + 24 h | episodes | alerts / 100 patient-days | "
            "alerts outside any labelled episode |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table.iter_rows(named=True):
        lead = "–" if r["median_lead_h"] is None else f"{r['median_lead_h']:.1f} h"
        lines.append(f"| {r['pack']} | {r['events']} | {r['detected']} | {_pct(r['sensitivity'])} "
                     f"| {lead} | {r['detected_24h']} | {r['episodes']} "
                     f"| {_num(r['alerts_per_100_pd'], 2)} | {_pct(r['unmatched_share'])} |")
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
