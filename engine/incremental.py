"""Incremental runs: ``veille score NEW_BATCH --store queue.duckdb`` continues where the store's
previous run stopped.

Evaluation is causal: a detector output, an as-of value, a silence and a rule condition at time
t depend only on readings at or before t, and cadence times are multiples of the cadence since
the epoch. So a run that (a) restores each (patient, rule) episode state machine as the previous
run left it at its ``as_of`` (T_prev) and (b) evaluates only the timeline times after T_prev,
with detector and as-of values computed from enough read-back history, gives the episodes a run
over all the readings at once gives: the same alerts, times and ids.

What the store keeps for this (:mod:`engine.store`, in the run's one transaction): every clean
reading (``readings``), each (patient, rule)'s kernel state at T_prev (``rule_state``, times in
µs: :data:`engine.episodes.STATE_FIELDS`), the episodes before ranking (``episodes``) and a
fingerprint of the configuration (packs and their files, model, language).

What a run reads back (:func:`horizons`): per metric, the readings after T_prev - H (H the
largest lookback plus staleness of the loaded packs' detectors on that metric) and each series'
latest reading at or before that bound (the as-of values, silences and ``previous`` need the
latest earlier reading at any age); the whole series for the detectors whose output depends on
all of it (cusum, time_below/above, events, ewma/macd).

Late readings (at or before T_prev, not in the store) re-score their patients from their whole
stored history: exact, their episodes replaced. A configuration change, or a risk model (whose
features and explanations read grid times at any age), re-scores every patient from the whole
history: exact, not incremental.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .detectors.registry import ALL_HISTORY
from .episodes import (EPISODE_COLUMNS, NEVER, OPENED, STATE_FIELDS, combine, empty_state)
from .errors import InputError
from .schema import TS_DTYPE

#: detectors whose registered lookback (all history) only means "the previous reading, however
#: old": the read-back always holds each series' latest reading before its bound, so their
#: horizon is how far back that reading must lie from the row (``previous``: its ``gap``)
_PREVIOUS_READING = {"since_last": None, "silence": None, "previous": "gap"}
#: detectors whose registered lookback truncates weights below 2**-40: exact to 1e-12, not bit
#: for bit, so an incremental run reads their whole series back
_GEOMETRIC = frozenset({"ewma", "macd"})
STATE_COLUMNS = {"patient_id": pl.String, "rule_id": pl.String,
                 **{f: pl.Int64 for f in STATE_FIELDS}}
READING_COLUMNS = {"patient_id": pl.String, "ts": TS_DTYPE, "metric": pl.String,
                   "value": pl.Float64, "unit": pl.String, "source": pl.String}


def spec_horizon(spec) -> int | None:
    """µs of history before a row that a detector spec (:class:`engine.detectors.ResolvedSpec`)
    needs for its output there to be exact, besides the series' latest earlier reading, which
    an incremental run always reads back; None: the whole series."""
    if spec.fn in _PREVIOUS_READING:
        key = _PREVIOUS_READING[spec.fn]
        return int(spec.params.get(key, 0)) if key else 0
    if spec.fn in _GEOMETRIC or spec.lookback_us >= ALL_HISTORY:
        return None
    return int(spec.lookback_us)


def horizons(packs) -> dict[str, int | None]:
    """Per metric, how far before T_prev an incremental run reads readings back (µs; None: all
    of them): the largest horizon plus staleness of the packs' detectors on it. A value read
    at a time after T_prev is at most its staleness old, and its detector output needs the
    detector's horizon before that; raw values and silences need only the latest reading,
    always read back. Metrics without a detector are absent (0)."""
    out: dict[str, int | None] = {}
    for pack in packs:
        for d in pack.detectors.values():
            if d.kind != "detector":
                continue
            metric = d.metrics[0]
            h = spec_horizon(d.resolved)
            need = None if h is None or d.staleness_us is None else h + int(d.staleness_us)
            if metric in out and out[metric] is None:
                continue
            out[metric] = None if need is None else max(need, out.get(metric) or 0)
    return out


def fingerprint(engine) -> str:
    """What the stored states depend on: the packs (names, versions, file hashes, sites), the
    model's SHA-256 and the language."""
    from .store import pack_provenance

    model = getattr(engine.model, "sha256", None) if engine.model is not None else None
    text = json.dumps([pack_provenance(engine.ruleset), model, engine.lang], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _us(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def _ts(us) -> pl.Expr:
    return pl.from_epoch(us, "us").dt.replace_time_zone("UTC")


class Resume:
    """The episode kernels' side of an incremental run (:func:`engine.episodes.open_episodes`):
    where each patient's evaluation starts, each (patient, rule)'s state there, and what each
    series' state is at its end."""

    def __init__(self, t_prev_us: int, states: pl.DataFrame, full: frozenset | None):
        self.t_prev_us = t_prev_us
        #: patients evaluated from their first time (None: all of them)
        self.full = full
        self.states = states
        self.finals: list[pl.DataFrame] = []
        self.carried: list[pl.DataFrame] = []

    def start(self, series_ids: pl.Series, ts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Each series' first row after its patient's start time."""
        out = offsets[:-1].copy()
        if self.full is None:
            return out
        ids = series_ids.to_list()
        for k in range(out.size):
            if ids[k] in self.full:
                continue
            a, b = offsets[k], offsets[k + 1]
            out[k] = a + np.searchsorted(ts[a:b], self.t_prev_us, side="right")
        return out

    def init(self, rule_id: str, series_ids: pl.Series) -> np.ndarray:
        """int64[7, s]: the state the previous run left each series of ``rule_id`` in."""
        mine = self.states.filter(pl.col("rule_id") == rule_id)
        if mine.height == 0:
            return empty_state(series_ids.len())
        got = series_ids.alias("patient_id").to_frame().join(
            mine, on="patient_id", how="left", maintain_order="left")
        state = empty_state(series_ids.len())
        for i, f in enumerate(STATE_FIELDS):
            col = got[f]
            if col.null_count() < col.len():
                state[i] = col.fill_null(state[i, 0]).to_numpy()
        return state

    def record(self, pack, rule, series_ids: pl.Series, init, final, carry,
               ts: np.ndarray) -> None:
        """Keep each series' final state and the update of the episode open at its start."""
        self.finals.append(pl.DataFrame(
            {"patient_id": series_ids, "rule_id": [rule.id] * series_ids.len(),
             **{f: final[i] for i, f in enumerate(STATE_FIELDS)}}, schema=STATE_COLUMNS))
        if init is None:
            return
        was_open = np.flatnonzero(init[OPENED] != NEVER)
        if was_open.size == 0:
            return
        res = carry[1, was_open]
        self.carried.append(pl.DataFrame({
            "patient_id": series_ids.gather(was_open), "rule_id": [rule.id] * was_open.size,
            "_opened": init[OPENED, was_open], "_last": carry[0, was_open],
            "_resolved": np.where(res >= 0, ts[np.maximum(res, 0)], NEVER)}))

    def state_after(self) -> pl.DataFrame:
        """Every (patient, rule)'s state after this run: the stored ones this run did not
        evaluate, replaced by the final states of those it did."""
        kept = self.states
        if self.full is None:
            kept = kept.clear()
        elif self.full:
            kept = kept.filter(~pl.col("patient_id").is_in(list(self.full)))
        finals = pl.concat(self.finals) if self.finals else pl.DataFrame(schema=STATE_COLUMNS)
        kept = kept.join(finals.select("patient_id", "rule_id"), on=["patient_id", "rule_id"],
                         how="anti")
        return pl.concat([kept, finals]).sort("patient_id", "rule_id")


@dataclass
class History:
    """A store's history, read before a run and written with it (:func:`engine.store.write_run`).

    ``t_prev`` is None when the store holds no history yet (a new store, or one written before
    incremental runs): the run then scores its input alone, as every run did before, and the
    store starts keeping history from it.
    """

    store: Path
    fingerprint: str
    as_of: dt.datetime
    t_prev: dt.datetime | None = None
    last_run: int | None = None
    horizons: dict = field(default_factory=dict)
    states: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=STATE_COLUMNS))
    episodes: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=EPISODE_COLUMNS))
    #: every patient re-scored from its whole history (a model, a new configuration)
    full_all: bool = False
    resume: Resume | None = None
    #: filled by :meth:`telemetry`: the readings this run adds to the store, the late ones
    new_readings: pl.DataFrame | None = None
    late: int = 0
    rescored: frozenset = frozenset()
    #: filled by :meth:`merge`: every episode after this run (before the follow-up window)
    merged: pl.DataFrame | None = None

    @property
    def incremental(self) -> bool:
        return self.t_prev is not None

    def telemetry(self, clean: pl.DataFrame, index, report, quarantine: pl.DataFrame):
        """The telemetry to evaluate: the batch's new readings and the stored history they need
        (:func:`horizons`), sorted by (patient, metric, time), with its series index; and the
        batch's row accounting and quarantine, where a reading at a stored (patient, metric,
        time) with another value is quarantined (``conflicting_duplicate``: the stored value is
        kept) and one with the same value is a duplicate collapsed."""
        from .ingest.index import SeriesIndex

        batch = clean.select([pl.col(c).cast(t) for c, t in READING_COLUMNS.items()])
        if not self.incremental:
            self.new_readings = batch
            self.rescored = frozenset(batch["patient_id"].unique().to_list())
            self.resume = Resume(NEVER, self.states.clear(), None)
            return clean, index, report, quarantine
        from .store import read_back, stored_matches

        t_prev = self.t_prev
        before = batch.filter(pl.col("ts") <= t_prev)
        stored = stored_matches(self.store, before)
        key = ["patient_id", "metric", "ts"]
        seen = before.join(stored, on=key, how="inner", suffix="_stored")
        conflicts = seen.filter(pl.col("value") != pl.col("value_stored"))
        late = before.join(stored, on=key, how="anti")
        new = pl.concat([batch.filter(pl.col("ts") > t_prev), late])
        self.new_readings = new
        self.late = late.height
        late_ids = frozenset(late["patient_id"].unique().to_list())
        self.rescored = late_ids
        bounds = {m: None if h is None else t_prev - dt.timedelta(microseconds=h)
                  for m, h in self.horizons.items()}
        history = read_back(self.store, bounds, t_prev, None if self.full_all else late_ids)
        tel = pl.concat([history, new]).sort("patient_id", "metric", "ts")
        if self.full_all:
            self.rescored = frozenset(tel["patient_id"].unique().to_list())
        states = self.states.filter(~pl.col("patient_id").is_in(list(self.rescored)))
        self.resume = Resume(_us(t_prev), states, None if self.full_all else late_ids)
        if seen.height:
            report = _collapse(report, seen.height - conflicts.height, conflicts, quarantine)
            if conflicts.height:
                quarantine = pl.concat([quarantine, _conflict_rows(conflicts, quarantine)],
                                       how="diagonal_relaxed")
        if tel.height == 0:
            raise InputError("no usable row: the store holds no reading and the input adds "
                             "none.", path=report.source)
        return tel, SeriesIndex.of(tel), report, quarantine

    def merge(self, episodes: pl.DataFrame, patients: pl.DataFrame | None) -> pl.DataFrame:
        """Every episode after this run: the stored ones (less those of re-scored patients),
        the open ones brought up to date, and those this run opened; then the follow-up window
        and the canonical order (:func:`engine.episodes.combine`)."""
        stored = self.episodes if self.incremental and not self.full_all else \
            self.episodes.clear()
        if self.resume is not None and self.resume.full:
            stored = stored.filter(~pl.col("patient_id").is_in(list(self.resume.full)))
        if self.resume is not None and self.resume.carried and stored.height:
            upd = pl.concat(self.resume.carried).with_columns(
                opened_at=_ts(pl.col("_opened")), _last=_ts(pl.col("_last")),
                _resolved=pl.when(pl.col("_resolved") != NEVER)
                .then(_ts(pl.col("_resolved")))).drop("_opened")
            stored = stored.join(upd, on=["patient_id", "rule_id", "opened_at"], how="left",
                                 maintain_order="left").with_columns(
                last_seen_at=pl.coalesce("_last", "last_seen_at"),
                resolved_at=pl.when(pl.col("_last").is_not_null()).then(pl.col("_resolved"))
                .otherwise(pl.col("resolved_at"))).drop("_last", "_resolved")
        self.merged = combine([stored.select(list(EPISODE_COLUMNS)), episodes], None)
        return combine([self.merged], patients)


def _collapse(report, collapsed: int, conflicts: pl.DataFrame, quarantine: pl.DataFrame):
    """The batch's accounting with the readings already in the store taken out of its used
    rows: as collapsed duplicates (same value) or quarantined (another value)."""
    from .ingest import Reconciliation

    by_reason = dict(report.by_reason)
    if conflicts.height:
        by_reason["conflicting_duplicate"] = by_reason.get("conflicting_duplicate", 0) \
            + conflicts.height
    return Reconciliation(**{
        **report.__dict__, "rows_used": report.rows_used - collapsed - conflicts.height,
        "rows_quarantined": report.rows_quarantined + conflicts.height,
        "duplicates_collapsed": report.duplicates_collapsed + collapsed,
        "by_reason": by_reason}).check()


def _conflict_rows(conflicts: pl.DataFrame, quarantine: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows for readings whose stored value differs (the input row is unknown once
    clean: ``row`` is null)."""
    return conflicts.select(
        pl.lit(None, pl.Int64).alias("row"), "patient_id",
        pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S%.f%:z").alias("ts"), "metric",
        pl.col("value").cast(pl.String), "unit", "source",
        pl.lit("conflicting_duplicate").alias("reason"),
        pl.format("the store holds {} at this patient, metric and time (kept)",
                  pl.col("value_stored")).alias("detail"),
    ).select([c for c in quarantine.columns if c in (
        "row", "patient_id", "ts", "metric", "value", "unit", "source", "reason", "detail")])


def open_history(store: str | Path, engine, latest: dt.datetime,
                 as_of: dt.datetime | None) -> History:
    """The history of the store at ``store`` for a run of ``engine`` over a batch whose latest
    usable reading is ``latest``, drawn up as of ``as_of`` (default: the later of ``latest``
    and the store's last ``as_of``). An ``as_of`` before the store's last one is refused."""
    from .store import read_history

    store = Path(store)
    fp = fingerprint(engine)
    got = read_history(store) if store.exists() else None
    if got is None or got["fingerprint"] is None:
        return History(store, fp, as_of or latest,
                       last_run=None if got is None else got["last_run"])
    t_prev = got["as_of"]
    if as_of is not None and as_of < t_prev:
        raise InputError(f"--as-of {as_of.isoformat()} is before the store's last run, drawn "
                         f"up as of {t_prev.isoformat()}: a store moves forward only (score "
                         "into a new store to look at an earlier time).", path=str(store))
    packs = list(engine.ruleset.packs)
    if engine.model is not None:
        from .risk.features import features_pack

        packs.append(features_pack())
    return History(store, fp, as_of or max(latest, t_prev), t_prev=t_prev,
                   last_run=got["last_run"], horizons=horizons(packs), states=got["states"],
                   episodes=got["episodes"],
                   full_all=engine.model is not None or got["fingerprint"] != fp)
