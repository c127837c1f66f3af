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
from numba import njit

from ..config import JIT
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


@njit(**JIT)
def _count_at_or_before(gcode, gts, ecode, et, out):
    """``out[i]``: how many events of patient ``gcode[i]`` are at or before ``gts[i]``.

    The grid rows are sorted by (code, time), the events too; both pointers only move
    forward: ``lo`` is the patient's first event, ``hi`` the first one after the row's time."""
    n = ecode.size
    lo = hi = 0
    for i in range(gcode.size):
        c, t = gcode[i], gts[i]
        while lo < n and ecode[lo] < c:
            lo += 1
        if hi < lo:
            hi = lo
        while hi < n and ecode[hi] == c and et[hi] <= t:
            hi += 1
        out[i] = hi - lo


def _us(col: pl.Series) -> np.ndarray:
    return col.cast(pl.Datetime("us", "UTC")).to_physical().to_numpy()


def is_ordered(grid: pl.DataFrame) -> bool:
    """True when the rows are in strictly increasing (patient_id, ts) order."""
    if grid.height < 2:
        return True
    pid, ts = pl.col("patient_id"), pl.col("ts")
    up = (pid > pid.shift()) | ((pid == pid.shift()) & (ts > ts.shift()))
    return bool(grid.select(up.slice(1).all()).item())


def rule_states(grid: pl.DataFrame, episodes: pl.DataFrame) -> pl.DataFrame:
    """The rule-state features at each row of ``grid`` (``patient_id``, ``ts``): alerts open by
    severity (opened at or before ts, not resolved at or before ts) and alerts opened in the
    24 hours up to ts.

    Each is a count of episode times at or before the row's time, for the row's patient:
    :func:`_count_at_or_before` on the grid in (patient, time) order — the pipeline's grid is
    in that order; another is sorted first and its counts put back in its rows' order."""
    n = grid.height
    order = None
    if not is_ordered(grid):
        order = grid.select(pl.arg_sort_by("patient_id", "ts")).to_series().to_numpy()
        grid = grid[order]
    ids = grid.get_column("patient_id").cast(pl.String)
    gcode = ids.rle_id().to_numpy().astype(np.int64)
    gts = _us(grid.get_column("ts"))
    codes = pl.DataFrame({"patient_id": ids.unique(maintain_order=True),
                          "_code": pl.int_range(0, ids.n_unique(), eager=True)})
    ep = (episodes.select(pl.col("patient_id").cast(pl.String), "severity", "opened_at",
                          "resolved_at")
          .join(codes, on="patient_id", how="inner"))

    def count(times: pl.DataFrame, at: np.ndarray = gts) -> np.ndarray:
        """Per row: the events (``_code``, ``t``) at or before ``at``."""
        times = times.filter(pl.col("t").is_not_null()).sort("_code", "t")
        out = np.zeros(n, np.int64)
        if times.height and n:
            _count_at_or_before(gcode, at, times["_code"].to_numpy().astype(np.int64),
                                _us(times["t"]), out)
        return out

    cols = {}
    for sev in ("high", "medium", "low"):
        e = ep.filter(pl.col("severity") == sev)
        opened = count(e.select("_code", pl.col("opened_at").alias("t")))
        closed = count(e.select("_code", pl.col("resolved_at").alias("t")))
        cols[f"open_{sev}"] = opened - closed
    opens = ep.select("_code", pl.col("opened_at").alias("t"))
    # a day earlier keeps the order: the same shift for every row
    cols["opened_24h"] = count(opens) - count(opens, gts - DAY_US)
    out = pl.DataFrame({k: v.astype(np.float64) for k, v in cols.items()}, height=n)
    if order is not None:
        back = np.empty(n, np.int64)
        back[order] = np.arange(n)
        out = out[back]
    return out


def assemble(parts: list[pl.DataFrame], episodes: pl.DataFrame) -> pl.DataFrame:
    """The feature frame: the timeline features of every chunk (``parts``) with the rule states
    from ``episodes``, sorted by patient and time; columns ``patient_id``, ``ts`` and
    :func:`feature_names` in order."""
    names = feature_names()
    if not parts:
        return pl.DataFrame(schema={"patient_id": pl.String, "ts": TS_DTYPE,
                                    **{n: pl.Float64 for n in names}})
    grid = pl.concat(parts, how="vertical")
    # the pipeline's chunks are whole patients in order, each timeline sorted: then sorting
    # would only copy the frame (about 650 MB at 1e7 rows)
    if not is_ordered(grid):
        grid = grid.sort("patient_id", "ts")
    states = rule_states(grid.select("patient_id", "ts"), episodes)
    return pl.concat([grid, states], how="horizontal").select("patient_id", "ts", *names)


def matrix(frame: pl.DataFrame) -> np.ndarray:
    """The model's input matrix (float64, NaN for unknown) of a feature frame."""
    # polars reads a Float64 null as NaN into its column-major array, the layout the compiled
    # trees read; filling the nulls first would copy every feature once more (about 650 MB
    # at 1e7 rows)
    return frame.select(feature_names()).cast(pl.Float64).to_numpy()


def warmup() -> None:
    """Compile (or load from the on-disk cache) :func:`_count_at_or_before` with a run's
    argument types."""
    one = np.zeros(1, np.int64)
    _count_at_or_before(one, one, one, one, np.zeros(1, np.int64))
