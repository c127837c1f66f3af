"""The alert queue: episodes ranked into the list a coordination nurse works through.

Priority: severity tier first (high, medium, low — IEC 60601-1-8's immediate,
prompt and awareness responses), then the calibrated risk when a model gives one (higher first),
then waiting time (the alert open longest first). Resolved episodes stay in the output for the
record but get no priority. Alerts are grouped per patient: ``patient_rank`` orders patients by
their most urgent open alert, so "who do I call first" is the first row.
"""
from __future__ import annotations

import hashlib

import polars as pl

SEVERITY_TIER = {"high": 0, "medium": 1, "low": 2}

QUEUE_COLUMNS: dict[str, pl.DataType] = {
    "alert_id": pl.String(),
    "priority": pl.Int64(),
    "patient_rank": pl.Int64(),
    "patient_id": pl.String(),
    "rule_id": pl.String(),
    "pack": pl.String(),
    "severity": pl.String(),
    "risk": pl.Float64(),
    "risk_factors": pl.String(),
    "status": pl.String(),
    "opened_at": pl.Datetime("us", "UTC"),
    "last_seen_at": pl.Datetime("us", "UTC"),
    "resolved_at": pl.Datetime("us", "UTC"),
    "title": pl.String(),
    "reason": pl.String(),
    "evidence": pl.String(),
    "labels": pl.String(),
}


def alert_id(patient_id: str, rule_id: str, opened_at) -> str:
    """Stable id of an episode: the same inputs give the same id on every run and machine."""
    key = f"{patient_id}\x1f{rule_id}\x1f{opened_at.isoformat()}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def alert_ids(df: pl.DataFrame) -> pl.Series:
    """:func:`alert_id` of every row of ``df`` (``patient_id, rule_id, opened_at``).

    The keys are built by polars (``opened_at`` written as :meth:`datetime.isoformat` writes a
    UTC time: microseconds only when not zero); only the hashing is a Python loop. Times in
    another zone, or years :meth:`~datetime.datetime.isoformat` pads differently from
    ``%Y``, take the row-by-row path.
    """
    t = pl.col("opened_at")
    dtype = df.schema["opened_at"]
    years = df.select(lo=t.dt.year().min(), hi=t.dt.year().max()).row(0) if df.height else (0, 0)
    if getattr(dtype, "time_zone", None) != "UTC" or not 1000 <= years[0] <= years[1] <= 9999:
        return pl.Series("alert_id", [alert_id(p, r, o) for p, r, o in df.select(
            "patient_id", "rule_id", "opened_at").iter_rows()], dtype=pl.String)
    iso = pl.when(t.dt.microsecond() == 0).then(t.dt.strftime("%Y-%m-%dT%H:%M:%S%:z")) \
        .otherwise(t.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z"))
    keys = df.select(pl.concat_str([pl.col("patient_id"), pl.lit("\x1f"), pl.col("rule_id"),
                                    pl.lit("\x1f"), iso])).to_series()
    sha = hashlib.sha256
    return pl.Series("alert_id", [sha(k.encode()).hexdigest()[:20] for k in keys],
                     dtype=pl.String)


def build_queue(episodes: pl.DataFrame, risk: pl.DataFrame | None = None) -> pl.DataFrame:
    """Rank episodes into the alert queue.

    Parameters
    ----------
    episodes : polars.DataFrame
        One row per episode with ``patient_id, rule_id, pack, severity, title, opened_at,
        last_seen_at, resolved_at, evidence, reason`` and optionally ``labels`` (JSON text of
        the rule's labels; ``{}`` without) — the output of the episodes stage.
    risk : polars.DataFrame, optional
        The risk model's calibrated probability: per alert (``patient_id, rule_id,
        opened_at, risk, risk_factors``, :func:`engine.risk.model.for_alerts`) or per patient
        (``patient_id, risk``, optionally ``risk_factors``). Without it ``risk`` is empty.
    """
    if episodes.height == 0:
        return pl.DataFrame(schema=QUEUE_COLUMNS)
    df = episodes
    if "labels" not in df.columns:
        df = df.with_columns(labels=pl.lit("{}"))
    if risk is not None:
        if "risk_factors" not in risk.columns:
            risk = risk.with_columns(risk_factors=pl.lit(None, pl.String))
        key = ["patient_id", "rule_id", "opened_at"] if "rule_id" in risk.columns \
            else ["patient_id"]
        df = df.join(risk.select(*key, "risk", "risk_factors"), on=key, how="left")
    else:
        df = df.with_columns(risk=pl.lit(None, dtype=pl.Float64),
                             risk_factors=pl.lit(None, dtype=pl.String))
    df = df.with_columns(
        alert_id=alert_ids(df),
        status=pl.when(pl.col("resolved_at").is_null()).then(pl.lit("open"))
        .otherwise(pl.lit("resolved")),
        _tier=pl.col("severity").replace_strict(SEVERITY_TIER, default=3,
                                                return_dtype=pl.Int64),
    )
    order = ["_open_last", "_tier", "_neg_risk", "opened_at", "patient_id", "rule_id"]
    df = df.with_columns(_open_last=(pl.col("status") != "open").cast(pl.Int8),
                         _neg_risk=(-pl.col("risk")).fill_null(0.0))
    df = df.sort(order, nulls_last=True).with_row_index("_pos", offset=1)
    df = df.with_columns(priority=pl.when(pl.col("status") == "open")
                         .then(pl.col("_pos").cast(pl.Int64)).otherwise(None))
    best = (df.group_by("patient_id").agg(pl.col("_pos").min().alias("_best"))
            .sort("_best").with_row_index("patient_rank", offset=1)
            .select("patient_id", pl.col("patient_rank").cast(pl.Int64)))
    df = df.join(best, on="patient_id", how="left")
    return df.sort("patient_rank", "_pos").select(
        [pl.col(c).cast(t) for c, t in QUEUE_COLUMNS.items()])


def summary(queue: pl.DataFrame) -> dict[str, int]:
    """Open alerts by severity, plus the number of patients with an open alert."""
    open_ = queue.filter(pl.col("status") == "open")
    out = {s: int((open_["severity"] == s).sum()) for s in SEVERITY_TIER}
    out["patients"] = open_["patient_id"].n_unique()
    out["resolved"] = queue.height - open_.height
    return out
