"""Detector throughput: veille against polars, DuckDB and pandas on the same detector set.

Run from the repository root::

    .venv/bin/python -m benchmarks.detectors                # 1e6 and 1e7 rows
    .venv/bin/python -m benchmarks.detectors --rows 200000  # a quick run
    .venv/bin/python -m benchmarks.detectors --large        # adds 3e7 rows

The data are long-format telemetry (``patient_id, metric, ts, value``) with irregular sampling
(exponential gaps, mean 5 minutes, and the odd 6-hour silence), many patients and three metrics,
sorted by ``(patient_id, metric, ts)``. Every implementation computes, per ``(patient, metric)``
series, the same eight outputs:

===============  =========================================================================
``mean_1h``      mean over the trailing 1 h window
``min_6h``       min over 6 h;  ``max_6h``: max over 6 h
``std_24h``      sample std (ddof 1) over 24 h
``delta_24h``    value minus the first value in the 24 h window
``z_72h``        (value - mean_72h) / std_72h, the current reading inside its own window
``above_min``    minutes the value has stayed continuously above 105 (0 when not above)
``since_last``   minutes since the previous reading of the series
===============  =========================================================================

Windows are ``[t - W, t]``, both ends closed. Tie semantics differ between the tools: veille and
pandas put the earlier rows of a tied timestamp in a row's window but not the later ones (row order
breaks ties); polars ``rolling_*_by(closed="both")`` and DuckDB ``RANGE ... CURRENT ROW`` include
every row of the tied timestamp (SQL peers). The generated data have no tied timestamps within a
series, so all four compute the same numbers; the benchmark checks that first, on a small cohort
(values, and nulls in the same places), then times each tool in a fresh subprocess so that peak
memory (Linux ``VmHWM``, reset after loading the input) belongs to that tool alone. The full-size
outputs are cross-checked by their column sums and null counts.

Columns of the printed table: ``wall s`` the best computation time. Every tool runs in one process
at least ``--repeat`` times (peers: 3 by default up to 2e6 rows, else 1; veille: at least 3), and
then again until its timed runs add up to ``--min-time`` seconds (3 by default; at most
``MAX_RUNS`` runs), as ``timeit``'s autorange does: the machine's speed comes and goes in
stretches of a few seconds (the benchmark machine's veille runs at 1e7 rows took 0.12 s for a
few seconds, then 0.17 s for a few more), so a tool whose runs are short would otherwise take
its best from a fraction of a second of the machine's time, and a slower tool from several
seconds. ``--min-time 0`` gives the run counts alone. veille's compilation into
an empty cache, its loading of the compiled kernels from that cache, and its first call are
reported apart — the first call writes its outputs into fresh memory, whose page faults later
calls avoid because veille reuses the memory of a released output, as polars' allocator does,
see ``engine/memory.py``); ``rows/s`` rows over that time; ``in`` the resident memory the tool's loaded input columns take
(RSS growth from loading them, freed memory handed back first); ``peak+`` the peak resident memory
above what the process held once its input was loaded (so it counts the result columns and every
temporary; Linux ``VmHWM`` reset through ``/proc/self/clear_refs``); ``peak+/in`` their ratio;
``work`` the peak above input minus the eight float64 output columns, i.e. temporaries only;
``x veille`` each tool's time over veille's.

``--dataset multi`` measures the layout the pipeline uses: six metrics (heart rate, respiratory
rate, SpO2, systolic pressure, temperature, weight), four detectors each (mean 1 h, min and max
6 h, std 24 h: 24 detectors). veille plans them per metric and writes each metric's outputs for
that metric's rows only (``engine.detect``: rows × 4, not rows × 24); the peers compute the same
four statistics per (patient, metric) series.

Results go to ``benchmarks/results/detectors-<rows>.json`` (``detectors-multi-<rows>.json``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

METRICS = ("heart_rate", "resp_rate", "spo2")     # sorted, as the telemetry contract sorts them
#: the multi-metric data set (--dataset multi): six metrics, four detectors each
METRICS6 = ("heart_rate", "resp_rate", "sbp", "spo2", "temp", "weight")
OUTPUTS4 = ("mean_1h", "min_6h", "max_6h", "std_24h")
ROWS_PER_SERIES = 600
THRESHOLD = 105.0
OUTPUTS = ("mean_1h", "min_6h", "max_6h", "std_24h", "delta_24h", "z_72h", "above_min",
           "since_last")
IMPLS = ("veille", "polars", "duckdb", "pandas")
COLUMNS = ("patient_id", "metric", "ts", "value")
T0_US = 1_704_067_200_000_000
RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def make_telemetry(rows: int, seed: int = 0) -> pl.DataFrame:
    """Sorted long-format telemetry with ``rows`` rows and no tied timestamps within a series."""
    METRICS = DATASET["metrics"]
    rng = np.random.default_rng(seed)
    n_series = max(1, -(-rows // ROWS_PER_SERIES))
    n_series = -(-n_series // len(METRICS)) * len(METRICS)      # whole patients
    lengths = np.full(n_series, rows // n_series, dtype=np.int64)
    lengths[: rows % n_series] += 1
    series = np.repeat(np.arange(n_series), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # gaps: >= 1 s (no ties), exponential with mean 5 min, 0.2 % of them a 6 h silence
    gaps = 1_000_000 + rng.exponential(300e6, rows).astype(np.int64)
    gaps[rng.random(rows) < 0.002] += 6 * 3_600_000_000
    gaps[starts] = rng.integers(0, 86_400_000_000, n_series)     # each series' first reading
    ts = np.cumsum(gaps)
    ts -= np.repeat(np.concatenate([[0], ts[starts[1:] - 1]]), lengths)
    ts += T0_US
    walk = np.cumsum(rng.normal(0.0, 0.3, rows))
    walk -= np.repeat(walk[starts], lengths)
    value = 100.0 + walk + rng.normal(0.0, 2.0, rows)
    n_pat = n_series // len(METRICS)
    width = len(str(n_pat))
    names = pl.Series([f"p{i:0{width}d}" for i in range(n_pat)])
    return pl.DataFrame({
        "patient_id": names.gather(series // len(METRICS)),
        "metric": pl.Series(METRICS).gather(series % len(METRICS)),
        "ts": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
        "value": value,
    })


# --------------------------------------------------------------------------------------------
# the four implementations: (load input from Parquet, compute, columns of the result)
# --------------------------------------------------------------------------------------------
VEILLE_SPECS = {
    "mean_1h": {"fn": "mean", "window": "1h"},
    "min_6h": {"fn": "min", "window": "6h"},
    "max_6h": {"fn": "max", "window": "6h"},
    "std_24h": {"fn": "std", "window": "24h"},
    "delta_24h": {"fn": "delta", "window": "24h"},
    "z_72h": {"fn": "zscore", "window": "72h", "lag": "0m", "min_count": 2},
    "above_min": {"fn": "time_above", "threshold": THRESHOLD},
    "since_last": {"fn": "since_last"},
}


def veille_compute(df: pl.DataFrame) -> pl.DataFrame:
    from engine.detectors import evaluate_all_metrics
    return evaluate_all_metrics(df, VEILLE_SPECS)


def polars_compute(df: pl.DataFrame) -> pl.DataFrame:
    s = ["patient_id", "metric"]
    v, t = pl.col("value"), pl.col("ts")
    above = v > THRESHOLD
    run_start = (above != above.shift(1)).fill_null(True).over(s)
    out = df.with_columns(
        v.rolling_mean_by(t, "1h", closed="both").over(s).alias("mean_1h"),
        v.rolling_min_by(t, "6h", closed="both").over(s).alias("min_6h"),
        v.rolling_max_by(t, "6h", closed="both").over(s).alias("max_6h"),
        v.rolling_std_by(t, "24h", closed="both").over(s).alias("std_24h"),
        ((v - v.rolling_mean_by(t, "72h", closed="both").over(s))
         / v.rolling_std_by(t, "72h", closed="both").over(s)).alias("z_72h"),
        pl.when(above).then((t - t.first().over(run_start.cum_sum())).dt.total_microseconds()
                            / 60e6).otherwise(0.0).alias("above_min"),
        (t.diff().over(s).dt.total_microseconds() / 60e6).alias("since_last"),
    )
    # the first value at or after t - 24h: an as-of join looking forward from t - 24h
    first = (df.select(*s, (t - pl.duration(hours=24)).alias("start"))
             .join_asof(df.select(*s, t.alias("start"), v.alias("first")), on="start", by=s,
                        strategy="forward", check_sortedness=False))
    return out.with_columns((v - first["first"]).alias("delta_24h"))


DUCKDB_SQL = f"""
CREATE OR REPLACE TABLE result AS
WITH runs AS (
  SELECT *, SUM(CASE WHEN above IS DISTINCT FROM prev THEN 1 ELSE 0 END)
            OVER (PARTITION BY patient_id, metric ORDER BY ts ROWS UNBOUNDED PRECEDING) AS run
  FROM (SELECT *, value > {THRESHOLD} AS above,
               LAG(value > {THRESHOLD}) OVER (PARTITION BY patient_id, metric ORDER BY ts) AS prev
        FROM telemetry))
SELECT patient_id, metric, ts, value,
  AVG(value) OVER w1 AS mean_1h,
  MIN(value) OVER w6 AS min_6h,
  MAX(value) OVER w6 AS max_6h,
  STDDEV_SAMP(value) OVER w24 AS std_24h,
  value - FIRST_VALUE(value) OVER w24 AS delta_24h,
  (value - AVG(value) OVER w72) / STDDEV_SAMP(value) OVER w72 AS z_72h,
  CASE WHEN above THEN (EPOCH_US(ts) - MIN(EPOCH_US(ts)) OVER (PARTITION BY patient_id,
       metric, run)) / 60e6 ELSE 0.0 END AS above_min,
  (EPOCH_US(ts) - EPOCH_US(LAG(ts) OVER (PARTITION BY patient_id, metric ORDER BY ts))) / 60e6
    AS since_last
FROM runs
WINDOW
  w1 AS (PARTITION BY patient_id, metric ORDER BY ts
         RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW),
  w6 AS (PARTITION BY patient_id, metric ORDER BY ts
         RANGE BETWEEN INTERVAL 6 HOUR PRECEDING AND CURRENT ROW),
  w24 AS (PARTITION BY patient_id, metric ORDER BY ts
          RANGE BETWEEN INTERVAL 24 HOUR PRECEDING AND CURRENT ROW),
  w72 AS (PARTITION BY patient_id, metric ORDER BY ts
          RANGE BETWEEN INTERVAL 72 HOUR PRECEDING AND CURRENT ROW)
"""


def duckdb_load(path):
    import duckdb
    con = duckdb.connect()
    con.execute(f"CREATE TABLE telemetry AS SELECT patient_id, metric, ts, value "
                f"FROM read_parquet('{path}')")
    return con


def duckdb_compute(con):
    con.execute(DUCKDB_SQL)
    return con


def duckdb_columns(con) -> pl.DataFrame:
    return con.sql("SELECT * FROM result ORDER BY patient_id, metric, ts").pl()


def polars_load(path) -> pl.DataFrame:
    """One contiguous chunk per column, read through Arrow so that no freed chunk is left in
    polars' allocator to be reused unseen by the computation (it would hide from the peak)."""
    import pyarrow.parquet as pq
    return pl.from_arrow(pq.read_table(path, columns=list(COLUMNS)).combine_chunks())


def pandas_load(path):
    import pandas as pd
    return pd.read_parquet(path, columns=list(COLUMNS))


def pandas_compute(df):
    import pandas as pd
    s = ["patient_id", "metric"]
    g = df.groupby(s, sort=False, observed=True)
    out = pd.DataFrame(index=df.index)
    r1 = g.rolling("1h", on="ts", closed="both")["value"]
    r6 = g.rolling("6h", on="ts", closed="both")["value"]
    r24 = g.rolling("24h", on="ts", closed="both")["value"]
    r72 = g.rolling("72h", on="ts", closed="both")["value"]
    # groupby-rolling returns rows group by group: the input's order, as it is sorted by group
    out["mean_1h"] = r1.mean().to_numpy()
    out["min_6h"] = r6.min().to_numpy()
    out["max_6h"] = r6.max().to_numpy()
    out["std_24h"] = r24.std().to_numpy()
    out["delta_24h"] = df["value"].to_numpy() - r24.first().to_numpy()
    out["z_72h"] = (df["value"].to_numpy() - r72.mean().to_numpy()) / r72.std().to_numpy()
    above = df["value"] > THRESHOLD
    new_series = (df["patient_id"] != df["patient_id"].shift()) | \
        (df["metric"] != df["metric"].shift())
    run = ((above != above.shift()) | new_series).cumsum()
    start = df["ts"].groupby(run).transform("first")
    out["above_min"] = ((df["ts"] - start).dt.total_seconds() / 60.0).where(above, 0.0)
    out["since_last"] = g["ts"].diff().dt.total_seconds() / 60.0
    return out


IMPL = {
    "veille": (polars_load, veille_compute, lambda r: r),
    "polars": (polars_load, polars_compute, lambda r: r),
    "duckdb": (duckdb_load, duckdb_compute, duckdb_columns),
    "pandas": (pandas_load, pandas_compute, lambda r: pl.from_pandas(r)),
}


# -- the multi-metric data set: four statistics per (patient, metric), laid out per metric ----
def veille_multi_compute(df: pl.DataFrame):
    from engine.detect import DetectorPlan, detect
    plan = DetectorPlan.from_specs({f"{m}.{o}": {"metric": m, **VEILLE_SPECS[o]}
                                    for m in METRICS6 for o in OUTPUTS4})
    return detect(df, plan)


def veille_multi_columns(det) -> pl.DataFrame:
    """The four outputs aligned to the rows (each row's value from its own metric's block)."""
    return pl.DataFrame({o: pl.select(pl.coalesce([det.column(f"{m}.{o}")
                                                   for m in METRICS6])).to_series()
                         for o in OUTPUTS4})


def polars_multi_compute(df: pl.DataFrame) -> pl.DataFrame:
    s = ["patient_id", "metric"]
    v, t = pl.col("value"), pl.col("ts")
    return df.with_columns(
        v.rolling_mean_by(t, "1h", closed="both").over(s).alias("mean_1h"),
        v.rolling_min_by(t, "6h", closed="both").over(s).alias("min_6h"),
        v.rolling_max_by(t, "6h", closed="both").over(s).alias("max_6h"),
        v.rolling_std_by(t, "24h", closed="both").over(s).alias("std_24h"))


DUCKDB_MULTI_SQL = """
CREATE OR REPLACE TABLE result AS
SELECT patient_id, metric, ts, value,
  AVG(value) OVER w1 AS mean_1h, MIN(value) OVER w6 AS min_6h, MAX(value) OVER w6 AS max_6h,
  STDDEV_SAMP(value) OVER w24 AS std_24h
FROM telemetry
WINDOW
  w1 AS (PARTITION BY patient_id, metric ORDER BY ts
         RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND CURRENT ROW),
  w6 AS (PARTITION BY patient_id, metric ORDER BY ts
         RANGE BETWEEN INTERVAL 6 HOUR PRECEDING AND CURRENT ROW),
  w24 AS (PARTITION BY patient_id, metric ORDER BY ts
          RANGE BETWEEN INTERVAL 24 HOUR PRECEDING AND CURRENT ROW)
"""


def duckdb_multi_compute(con):
    con.execute(DUCKDB_MULTI_SQL)
    return con


def pandas_multi_compute(df):
    import pandas as pd
    g = df.groupby(["patient_id", "metric"], sort=False, observed=True)
    out = pd.DataFrame(index=df.index)
    r1 = g.rolling("1h", on="ts", closed="both")["value"]
    r6 = g.rolling("6h", on="ts", closed="both")["value"]
    out["mean_1h"] = r1.mean().to_numpy()
    out["min_6h"] = r6.min().to_numpy()
    out["max_6h"] = r6.max().to_numpy()
    out["std_24h"] = g.rolling("24h", on="ts", closed="both")["value"].std().to_numpy()
    return out


DATASETS = {
    "single": {"metrics": METRICS, "outputs": OUTPUTS, "impl": IMPL, "tag": ""},
    "multi": {"metrics": METRICS6, "outputs": OUTPUTS4, "tag": "multi-", "impl": {
        "veille": (polars_load, veille_multi_compute, veille_multi_columns),
        "polars": (polars_load, polars_multi_compute, lambda r: r),
        "duckdb": (duckdb_load, duckdb_multi_compute, duckdb_columns),
        "pandas": (pandas_load, pandas_multi_compute, lambda r: pl.from_pandas(r)),
    }},
}
DATASET = DATASETS["single"]


def columns_of(impl: str, result) -> dict[str, np.ndarray]:
    """The outputs as float64 arrays, null -> NaN, in (patient, metric, ts) order."""
    frame = DATASET["impl"][impl][2](result)
    return {c: frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
            for c in DATASET["outputs"]}


# --------------------------------------------------------------------------------------------
# agreement
# --------------------------------------------------------------------------------------------
def check_agreement(rows: int, tmp: Path, rtol: float = 1e-6) -> dict:
    """Run the four on a small cohort; return the largest relative difference to veille."""
    path = tmp / "check.parquet"
    make_telemetry(rows, seed=1).write_parquet(path)
    cols = {}
    for impl in IMPLS:
        load, compute, _ = DATASET["impl"][impl]
        cols[impl] = columns_of(impl, compute(load(path)))
    report = {}
    for impl in IMPLS[1:]:
        worst = {}
        for c in DATASET["outputs"]:
            a, b = cols["veille"][c], cols[impl][c]
            # a peer's +-inf (0/0 or x/0 z-score) is "undefined", as veille's null
            b = np.where(np.isfinite(b), b, np.nan)
            if not np.array_equal(np.isnan(a), np.isnan(b)):
                raise AssertionError(f"{impl} {c}: nulls at different rows "
                                     f"({np.isnan(a).sum()} vs {np.isnan(b).sum()})")
            ok = ~np.isnan(a)
            denom = np.maximum(np.abs(a[ok]), 1.0)
            worst[c] = float(np.max(np.abs(a[ok] - b[ok]) / denom, initial=0.0))
            if worst[c] > rtol:
                raise AssertionError(f"{impl} {c}: relative difference {worst[c]:.3g} > {rtol}")
        report[impl] = worst
    return report


# --------------------------------------------------------------------------------------------
# one implementation in its own process
# --------------------------------------------------------------------------------------------
def _status(key: str) -> int:
    """A /proc/self/status field in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def compile_veille() -> dict:
    """Compile veille's kernels into the (empty) cache; the cost of a first run after install."""
    from engine.detectors import is_cached, warmup
    fns = sorted({s["fn"] for s in VEILLE_SPECS.values()})
    before = is_cached(fns)
    t = time.perf_counter()
    warmup(fns)
    if DATASET is DATASETS["multi"]:
        veille_multi_compute(make_telemetry(1000))      # the detect stage's own kernels
    return {"cached_before": before, "compile_s": time.perf_counter() - t}


def _release_free_memory() -> None:
    """Hand freed memory back to the system, so the next peak counts only what is then used."""
    import ctypes

    import pyarrow as pa
    gc.collect()
    pa.default_memory_pool().release_unused()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


#: most timed runs of one tool (``--min-time``)
MAX_RUNS = 50
#: default ``--min-time``: seconds of timed runs each tool makes at least
MIN_TIME_S = 3.0


def run_one(impl: str, path: str, repeat: int, min_time: float = 0.0) -> dict:
    """Load, then time ``repeat`` computations, and more until they add up to ``min_time``
    seconds (at most :data:`MAX_RUNS`); peak memory is measured from after the load.

    veille loads its compiled kernels from the on-disk cache before the data (``cache_load_s``);
    its compilation is timed apart (:func:`compile_veille`, another process) so that the
    compiler's own memory does not hide in this process's heap.
    """
    load, compute, _ = DATASET["impl"][impl]
    out = {"impl": impl}
    if impl == "veille":
        from engine.detectors import warmup
        t = time.perf_counter()
        warmup(sorted({s["fn"] for s in VEILLE_SPECS.values()}))
        if DATASET is DATASETS["multi"]:
            veille_multi_compute(make_telemetry(1000))
        out["cache_load_s"] = time.perf_counter() - t
    import duckdb  # noqa: F401  (every reader's libraries are in memory before the baseline)
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    _release_free_memory()
    rss_base = _status("VmRSS")
    data = load(path)
    _release_free_memory()
    rss_loaded = _status("VmRSS")
    out["input_rss_bytes"] = rss_loaded - rss_base
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                           # reset the peak (VmHWM) to the current RSS
    times = []
    result = None
    while len(times) < repeat or (sum(times) < min_time and len(times) < MAX_RUNS):
        result = None
        t = time.perf_counter()
        result = compute(data)
        times.append(time.perf_counter() - t)
    out["peak_extra_bytes"] = _status("VmHWM") - rss_loaded
    out["peak_rss_bytes"] = _status("VmHWM")
    out["times_s"] = times
    cols = columns_of(impl, result)
    out["sums"] = {c: float(np.nansum(np.where(np.isfinite(v), v, np.nan)))
                   for c, v in cols.items()}
    out["nulls"] = {c: int((~np.isfinite(v)).sum()) for c, v in cols.items()}
    return out


def run_in_subprocess(impl: str, path: Path | None, repeat: int, cache_dir: str | None,
                      min_time: float = 0.0) -> dict:
    env = dict(os.environ)
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    args = (["--compile"] if path is None else
            ["--data", str(path), "--repeat", str(repeat), "--min-time", str(min_time)])
    args += ["--dataset", "multi" if DATASET is DATASETS["multi"] else "single"]
    r = subprocess.run([sys.executable, "-m", "benchmarks.detectors", "--impl", impl, *args],
                       capture_output=True, text=True, env=env,
                       cwd=Path(__file__).resolve().parents[1])
    if r.returncode != 0:
        raise RuntimeError(f"{impl} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def bench(rows: int, tmp: Path, repeat: int, min_time: float = MIN_TIME_S) -> dict:
    """Time the four on ``rows`` rows, each at least ``repeat`` times (veille at least 3, it is
    cheap) and for at least ``min_time`` seconds of timed runs."""
    path = tmp / f"telemetry-{rows}.parquet"
    df = make_telemetry(rows)
    input_bytes = int(df.estimated_size())
    df.write_parquet(path, row_group_size=rows)
    del df
    runs = {}
    with tempfile.TemporaryDirectory() as owner_only:   # veille compiles into an empty cache,
        cold = str(Path(owner_only) / "numba")           # in a folder whose parent is not /tmp
        compiled = run_in_subprocess("veille", None, 0, cold)
        for impl in IMPLS:
            n = max(repeat, 3) if impl == "veille" else repeat
            runs[impl] = run_in_subprocess(impl, path, n, cold if impl == "veille" else None,
                                           min_time)
    runs["veille"].update(compiled)
    ref = runs["veille"]
    for impl in IMPLS[1:]:
        for c in DATASET["outputs"]:
            a, b = ref["sums"][c], runs[impl]["sums"][c]
            if abs(a - b) > 1e-6 * max(1.0, abs(a)) or ref["nulls"][c] != runs[impl]["nulls"][c]:
                raise AssertionError(f"{rows} rows, {impl} {c}: sum {b} vs veille {a}, nulls "
                                     f"{runs[impl]['nulls'][c]} vs {ref['nulls'][c]}")
    best = {impl: min(r["times_s"]) for impl, r in runs.items()}
    output_bytes = rows * len(DATASET["outputs"]) * 8          # the float64 result columns
    table = []
    for impl in IMPLS:
        r = runs[impl]
        table.append({
            "impl": impl, "wall_s": best[impl], "rows_per_s": rows / best[impl],
            "peak_extra_mb": r["peak_extra_bytes"] / 2**20,
            "input_rss_mb": r["input_rss_bytes"] / 2**20,
            "peak_extra_over_input": r["peak_extra_bytes"] / r["input_rss_bytes"],
            "working_mb": (r["peak_extra_bytes"] - output_bytes) / 2**20,
            "peak_rss_mb": r["peak_rss_bytes"] / 2**20,
            "ratio_to_veille": best[impl] / best["veille"],
        })
    return {"rows": rows, "dataset": "multi" if DATASET is DATASETS["multi"] else "single",
            "input_bytes": input_bytes, "output_bytes": output_bytes,
            "repeat": repeat,
            "min_time_s": min_time,
            "veille_compile_s": runs["veille"]["compile_s"],
            "veille_cache_load_s": runs["veille"]["cache_load_s"],
            "veille_first_call_s": runs["veille"]["times_s"][0],
            "veille_warm_s": best["veille"], "table": table, "runs": runs,
            "cpu_count": os.cpu_count()}


def print_table(res: dict) -> None:
    print(f"\n{res['rows']:,} rows (polars estimated_size {res['input_bytes'] / 2**20:.0f} MiB), "
          f"best of the runs (at least {res['repeat']}, veille 3, and "
          f"{res.get('min_time_s', 0):g} s of runs each: "
          + ", ".join(f"{k} {len(r['times_s'])}" for k, r in res["runs"].items())
          + f"); veille: compile into an empty cache {res['veille_compile_s']:.1f} s, load from the "
          f"cache {res['veille_cache_load_s']:.2f} s, first call {res['veille_first_call_s']:.3f}"
          f" s, warm {res['veille_warm_s']:.3f} s")
    print(f"{'impl':<8} {'wall s':>8} {'rows/s':>12} {'in MiB':>7} {'peak+ MiB':>10} "
          f"{'peak+/in':>9} {'work MiB':>9} {'x veille':>9}")
    for r in res["table"]:
        print(f"{r['impl']:<8} {r['wall_s']:>8.3f} {r['rows_per_s']:>12,.0f} "
              f"{r['input_rss_mb']:>7.0f} {r['peak_extra_mb']:>10.0f} "
              f"{r['peak_extra_over_input']:>9.2f} {r['working_mb']:>9.0f} "
              f"{r['ratio_to_veille']:>9.1f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, action="append",
                    help="rows to generate (repeatable); default 1e6 and 1e7")
    ap.add_argument("--large", action="store_true", help="also run 3e7 rows")
    ap.add_argument("--repeat", type=int, help="timed runs per peer (best kept); default 3 up "
                    "to 2e6 rows, else 1; veille always runs at least 3")
    ap.add_argument("--min-time", type=float, default=MIN_TIME_S,
                    help="then run each tool again until its timed runs add up to this many "
                         f"seconds (at most {MAX_RUNS} runs; 0: the run counts alone)")
    ap.add_argument("--check-rows", type=int, default=60_000,
                    help="rows of the cohort the four must agree on")
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="single",
                    help="single: three metrics, eight detectors applied to every metric; "
                         "multi: six metrics, four detectors of each metric")
    ap.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global DATASET
    DATASET = DATASETS[args.dataset]
    if args.impl:                                    # child process: one tool, JSON on stdout
        res = (compile_veille() if args.compile else
               run_one(args.impl, args.data, args.repeat or 1, args.min_time))
        print(json.dumps(res))
        return
    sizes = args.rows or [1_000_000, 10_000_000]
    if args.large:
        sizes.append(30_000_000)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        agreement = check_agreement(args.check_rows, Path(tmp))
        print(f"agreement on {args.check_rows:,} rows: max relative difference to veille "
              + ", ".join(f"{k} {max(v.values()):.1e}" for k, v in agreement.items()))
        for rows in sizes:
            repeat = args.repeat or (3 if rows <= 2_000_000 else 1)
            res = bench(rows, Path(tmp), repeat, args.min_time)
            res["agreement"] = agreement
            print_table(res)
            out = RESULTS / f"detectors-{DATASET['tag']}{rows}.json"
            tmp_out = out.with_suffix(".json.tmp")
            tmp_out.write_text(json.dumps(res, indent=2))
            tmp_out.replace(out)
            print(f"-> {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
