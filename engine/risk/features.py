"""Features of the deterioration-risk model, from the stages the rules run on.

The features are a rule pack (``features.yaml`` beside this module) whose detectors join the
packs' in the detect stage (one fused pass, deduplicated) and whose timeline is built by the
timeline stage on a fixed 4-hour grid (:func:`engine.timeline.build` with ``readings=False``):
the same detector outputs, as-of values, staleness, NEWS2 and patient context as the rules, so
training and scoring cannot compute a feature two ways. To those this module adds the
programme (one column per programme, 0/1) and the rule states at each time: the alerts open
by severity and the alerts opened in the last 24 hours (from the episodes stage; packs whose
rules read ``risk`` are not counted, they come after the model).

:func:`feature_names` is the model's input, in order; an artifact trained on another list is
refused at load (:mod:`engine.risk.artifact`).
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import polars as pl

from ..schema import PROGRAMMES, TS_DTYPE

FEATURES_FILE = Path(__file__).with_name("features.yaml")
#: the features pack's name (its timeline columns are prefixed with it)
PACK = "risk_features"
PROGRAMME_FEATURES = tuple(f"programme_{p}" for p in PROGRAMMES)
RULE_STATE_FEATURES = ("open_high", "open_medium", "open_low", "opened_24h")
#: the patient context and score columns of the timeline the model reads, by name
CONTEXT_FEATURES = ("news2", "age", "since_enrolment")
DAY_US = 86_400_000_000


@functools.lru_cache(maxsize=1)
def features_pack():
    """The compiled features pack (loaded once per process)."""
    from ..ruleset import load_rules

    return load_rules([FEATURES_FILE]).packs[0]


def pack_features(pack=None) -> tuple[str, ...]:
    """The features the timeline gives: the pack's detectors, then its named conditions, then
    NEWS2, age and time since enrolment."""
    pack = pack or features_pack()
    return (tuple(pack.detectors) + tuple(c.name for c in pack.conditions)
            + CONTEXT_FEATURES)


def feature_names(pack=None) -> tuple[str, ...]:
    """Every feature of the model, in the order of its input columns."""
    return pack_features(pack) + PROGRAMME_FEATURES + RULE_STATE_FEATURES


def features_digest() -> str:
    """SHA-256 of the features file and the feature list: what a model card records."""
    h = hashlib.sha256(FEATURES_FILE.read_bytes())
    h.update("\x1f".join(feature_names()).encode())
    return h.hexdigest()


def timeline_features(tl, pack=None) -> pl.DataFrame:
    """``patient_id``, ``ts`` and the timeline's features (Float64, null where unknown) of a
    features-pack :class:`~engine.timeline.Timeline`."""
    pack = pack or features_pack()
    v = tl.values
    cols = [v.get_column(d.column).cast(pl.Float64).alias(name)
            for name, d in pack.detectors.items()]
    cols += [v.get_column(c.column).cast(pl.Float64).alias(c.name) for c in pack.conditions]
    for name in CONTEXT_FEATURES:
        cols.append((v.get_column(name).cast(pl.Float64) if name in v.columns
                     else pl.Series(name, [None] * tl.height, pl.Float64)).alias(name))
    programme = (v.get_column("programme").cast(pl.String) if "programme" in v.columns
                 else pl.Series("programme", [None] * tl.height, pl.String))
    cols += [(programme == p).fill_null(False).cast(pl.Float64).alias(f"programme_{p}")
             for p in PROGRAMMES]
    return pl.DataFrame([tl.patient_ids(), tl.times().cast(TS_DTYPE), *cols], height=tl.height)


def _asof_count(grid: pl.DataFrame, times: pl.DataFrame, name: str) -> pl.Series:
    """Per row of ``grid`` (patient_id, ts): how many of ``times`` (patient_id, t) are at or
    before its ts, for the same patient."""
    if times.height == 0:
        return pl.Series(name, np.zeros(grid.height), pl.Float64)
    cum = (times.sort("patient_id", "t")
           .with_columns(pl.int_range(1, pl.len() + 1).over("patient_id").alias("_n")))
    got = grid.select("patient_id", "ts", pl.int_range(pl.len()).alias("_row")).sort(
        "patient_id", "ts").join_asof(cum, left_on="ts", right_on="t", by="patient_id",
                                      strategy="backward", check_sortedness=False)
    return got.sort("_row")["_n"].fill_null(0).cast(pl.Float64).alias(name)


def rule_states(grid: pl.DataFrame, episodes: pl.DataFrame) -> pl.DataFrame:
    """The rule-state features at each row of ``grid`` (``patient_id``, ``ts``): alerts open by
    severity (opened at or before ts, not resolved at or before ts) and alerts opened in the
    24 hours up to ts."""
    cols = []
    ep = episodes.select("patient_id", "severity", "opened_at", "resolved_at")
    for sev in ("high", "medium", "low"):
        e = ep.filter(pl.col("severity") == sev)
        opened = _asof_count(grid, e.select("patient_id", pl.col("opened_at").alias("t")), "o")
        closed = _asof_count(grid, e.filter(pl.col("resolved_at").is_not_null())
                             .select("patient_id", pl.col("resolved_at").alias("t")), "c")
        cols.append((opened - closed).alias(f"open_{sev}"))
    all_open = ep.select("patient_id", pl.col("opened_at").alias("t"))
    now = _asof_count(grid, all_open, "n")
    before = _asof_count(grid.with_columns(pl.col("ts") - pl.duration(days=1)), all_open, "b")
    cols.append((now - before).alias("opened_24h"))
    return pl.DataFrame(cols, height=grid.height)


def assemble(parts: list[pl.DataFrame], episodes: pl.DataFrame) -> pl.DataFrame:
    """The feature frame: the timeline features of every chunk (``parts``) with the rule states
    from ``episodes``, sorted by patient and time; columns ``patient_id``, ``ts`` and
    :func:`feature_names` in order."""
    names = feature_names()
    if not parts:
        return pl.DataFrame(schema={"patient_id": pl.String, "ts": TS_DTYPE,
                                    **{n: pl.Float64 for n in names}})
    grid = pl.concat(parts, how="vertical").sort("patient_id", "ts")
    states = rule_states(grid.select("patient_id", "ts"), episodes)
    return pl.concat([grid, states], how="horizontal").select("patient_id", "ts", *names)


def matrix(frame: pl.DataFrame) -> np.ndarray:
    """The model's input matrix (float64, NaN for unknown) of a feature frame."""
    return frame.select(feature_names()).cast(pl.Float64).fill_null(np.nan).to_numpy()
