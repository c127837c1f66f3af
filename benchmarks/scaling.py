"""Scale: rows/s and peak memory of ``veille score`` from 1e6 to 1e8 rows, on one machine and
through local Spark.

Run from the repository root::

    uv run python -m benchmarks.scaling                          # 1e6 and 1e7 rows
    uv run python -m benchmarks.scaling --rows 100000000         # the largest, on demand
    uv run python -m benchmarks.scaling --spark                  # add Spark local[2]

Cohorts are generated to disk part by part (``engine.synth``: the seven programmes, about
1,800 readings per patient over 42 days, mostly CGM glucose): each part of at most
:data:`PART_ROWS` rows is a cohort of its own seed whose patient ids get the part's prefix
(``S03-P000017``), appended to one Parquet file in patient order — so no size is ever held in
memory whole. Each measure is the whole command a scheduler runs, in a new process::

    veille score telemetry.parquet --patients patients.parquet --out queue.parquet \\
        --memory-limit LIMIT

``--memory-limit`` (default 3GiB) makes every size above the in-memory threshold stream in
whole-patient chunks (``engine/stream.py``); ``peak`` is the process's peak resident memory
(``ru_maxrss`` of that child), ``rows/s`` the file's rows over the command's wall time
(starting Python, loading packs and kernels included). With ``--spark`` the same job runs as
``veille score --engine spark --master local[2]`` (Spark's start-up included; its JVM is a
separate process, not counted). Results go to ``benchmarks/results/scaling-<rows>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
ROWS_PER_PATIENT = 1_800
DAYS = 42
PART_ROWS = 5_000_000


def make_cohort(rows: int, folder: Path, seed: int) -> dict:
    """Telemetry and patients Parquet files of about ``rows`` rows, written part by part."""
    import polars as pl
    import pyarrow.parquet as pq

    from engine.synth import generate_cohort

    folder.mkdir(parents=True, exist_ok=True)
    patients_total = max(1, round(rows / ROWS_PER_PATIENT))
    per_part = max(1, round(PART_ROWS / ROWS_PER_PATIENT))
    tel_path, pat_path = folder / "telemetry.parquet", folder / "patients.parquet"
    t = time.perf_counter()
    writer = None
    patients = []
    n = 0
    for part, start in enumerate(range(0, patients_total, per_part)):
        size = min(per_part, patients_total - start)
        c = generate_cohort(size, DAYS, seed * 1000 + part)
        prefix = pl.lit(f"S{part:03d}-")
        tel = c.telemetry.with_columns(patient_id=prefix + pl.col("patient_id"))
        patients.append(c.patients.with_columns(patient_id=prefix + pl.col("patient_id")))
        table = tel.to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(tel_path, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=1_000_000)
        n += tel.height
        del c, tel, table
    writer.close()
    pl.concat(patients).write_parquet(pat_path)
    return {"telemetry": str(tel_path), "patients": str(pat_path), "rows": n,
            "patients_n": patients_total, "generate_s": time.perf_counter() - t,
            "file_mb": tel_path.stat().st_size / 2**20}


def run_command(args: list[str], out_dir: Path) -> dict:
    """One command in a new process: wall time, its own peak RSS (and its children's, for the
    Spark JVM), the report lines it printed."""
    veille = Path(sys.executable).with_name("veille")
    out, err = out_dir / "stdout.txt", out_dir / "stderr.txt"
    t = time.perf_counter()
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([str(veille), *args, "--top", "0"], cwd=ROOT, stdout=fo,
                                stderr=fe, env={**os.environ, "COLUMNS": "200"})
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    stdout, stderr = out.read_text(), err.read_text()
    if "written" not in stdout:
        raise SystemExit(f"veille score failed:\n{stdout}\n{stderr}")
    return {"wall_s": wall, "peak_rss_mb": rusage.ru_maxrss / 1024,
            "report": [ln for ln in stdout.splitlines()
                       if ln.startswith(("rows", "read", "time", "alerts"))]}


def bench(rows: int, tmp: Path, seed: int, limit: str, spark: bool,
          spark_rows: int) -> dict:
    cohort = make_cohort(rows, tmp / f"c{rows}", seed)
    n = cohort["rows"]
    print(f"{n:,} rows ({cohort['patients_n']:,} patients) generated in "
          f"{cohort['generate_s']:.0f} s, {cohort['file_mb']:.0f} MB", flush=True)
    base = ["score", cohort["telemetry"], "--patients", cohort["patients"]]
    local = run_command(base + ["--out", str(tmp / "q.parquet"), "--memory-limit", limit],
                        tmp)
    local["rows_per_s"] = n / local["wall_s"]
    print(f"  local  {local['wall_s']:7.1f} s  {local['rows_per_s'] / 1e6:5.2f} M rows/s  "
          f"peak {local['peak_rss_mb']:,.0f} MB", flush=True)
    res = {"rows": n, "patients": cohort["patients_n"], "memory_limit": limit,
           "generate_s": cohort["generate_s"], "file_mb": cohort["file_mb"], "local": local,
           "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
    if spark and rows <= spark_rows:
        sp = run_command(base + ["--out", str(tmp / "qs.parquet"), "--engine", "spark",
                                 "--master", "local[2]"], tmp)
        sp["rows_per_s"] = n / sp["wall_s"]
        sp["overhead_x"] = sp["wall_s"] / local["wall_s"]
        import polars as pl
        from polars.testing import assert_frame_equal

        assert_frame_equal(pl.read_parquet(tmp / "q.parquet"), pl.read_parquet(tmp / "qs.parquet"))
        sp["same_queue"] = True
        res["spark"] = sp
        print(f"  spark  {sp['wall_s']:7.1f} s  {sp['rows_per_s'] / 1e6:5.2f} M rows/s  "
              f"({sp['overhead_x']:.1f}x the local run; same queue)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scaling-{rows}.json").write_text(json.dumps(res, indent=1))
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, action="append",
                    help="rows to generate (repeatable; default 1e6 and 1e7)")
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--memory-limit", default="3GiB")
    ap.add_argument("--spark", action="store_true", help="also run the job on Spark local[2]")
    ap.add_argument("--spark-rows", type=int, default=10_000_000,
                    help="with --spark: only for sizes up to this many rows")
    ap.add_argument("--tmp", default=None, help="folder for the generated files (default: a "
                    "temporary one; 1e8 rows take about 1.5 GB)")
    args = ap.parse_args(argv)
    sizes = args.rows or [1_000_000, 10_000_000]
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        out = [bench(r, Path(tmp), args.seed, args.memory_limit, args.spark, args.spark_rows)
               for r in sizes]
    print("\n| rows | patients | wall | rows/s | peak RSS |" + (" Spark local[2] |"
                                                              if args.spark else ""))
    print("|---:|---:|---:|---:|---:|" + ("---:|" if args.spark else ""))
    for r in out:
        line = (f"| {r['rows']:,} | {r['patients']:,} | {r['local']['wall_s']:.1f} s | "
                f"{r['local']['rows_per_s'] / 1e6:.2f} M | {r['local']['peak_rss_mb']:,.0f} MB |")
        if "spark" in r:
            line += f" {r['spark']['wall_s']:.1f} s ({r['spark']['overhead_x']:.1f}×) |"
        print(line)


if __name__ == "__main__":
    main()
