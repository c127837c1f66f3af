"""End-to-end throughput: ``veille score`` from a Parquet file to the queue, per stage, against
the time to merely read the same file.

Run from the repository root::

    uv run python -m benchmarks.pipeline                    # 1e6 and 1e7 rows
    uv run python -m benchmarks.pipeline --rows 1000000     # one size

Cohorts come from the generator (``veille generate``: the seven programmes, every metric each
sends, labelled episodes), sized to the rows asked (about 1,800 readings per patient over 42
days; most of them CGM glucose, as in a real mix where 15 % of patients wear a CGM). Each size is
measured in fresh processes:

* ``read``: ``polars.read_parquet`` of the telemetry file — the floor of any run;
* ``engine``: ``Engine.score`` (the 11 bundled packs, loaded beforehand with their compiled
  kernels, as a platform embedding veille keeps them) on the file and the patients table, then
  the queue and its quarantine written to Parquet: the data path, best of ``--repeat`` runs
  (3 by default: the first run in a process touches its memory for the first time, the later
  ones reuse it as a platform's repeated runs do, so two of the three are warm runs), with the
  time of each stage;
* ``command``: the whole ``veille score FILE --patients … --out queue.parquet`` command in a new
  process, as a user or a scheduler runs it: the data path plus starting Python, importing the
  libraries, loading the packs and the compiled kernels (partly overlapped with the reading);
  once with the rules alone (``--model none``) and once as the command runs by default, with the
  bundled risk model (its import, check and load, the 4-hour feature grid, the scores and the
  explanations of the open alerts).

Memory: ``in`` is the resident memory the telemetry takes once read (RSS growth of
``read_parquet``); ``peak+`` the peak resident memory of a run above the process before it read
anything (Linux ``VmHWM``; the highest over the runs, the first one's, which starts with no
memory kept from an earlier run); ``peak+/in`` their ratio. Results go to
``benchmarks/results/pipeline-<rows>.json``.
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

# engine before polars: importing it sets the allocators' settings every veille process runs
# with, which polars and pyarrow read when they load (docs/architecture.md, "Memory")
import engine  # noqa: E402
from benchmarks.detectors import _status  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
ROWS_PER_PATIENT = 1_800          # 42 days of the generator's programme mix
DAYS = 42


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def make_cohort(rows: int, folder: Path, seed: int) -> dict:
    from engine.synth import write_cohort

    patients = max(1, round(rows / ROWS_PER_PATIENT))
    t = time.perf_counter()
    paths = write_cohort(folder, patients=patients, days=DAYS, seed=seed)
    import polars as pl
    n = pl.scan_parquet(paths["telemetry"]).select(pl.len()).collect().item()
    return {"patients": patients, "rows": n, "generate_s": time.perf_counter() - t,
            "telemetry": str(paths["telemetry"]), "patients_file": str(paths["patients"])}


# -- children: one measurement each, JSON on stdout ------------------------------------------

def child_read(path: str) -> dict:
    import polars as pl
    base = _status("VmRSS")
    t = time.perf_counter()
    df = pl.read_parquet(path)
    seconds = time.perf_counter() - t
    return {"read_s": seconds, "input_rss_bytes": _status("VmRSS") - base,
            "estimated_bytes": int(df.estimated_size()), "rows": df.height}


def child_engine(path: str, patients: str, repeat: int) -> dict:
    from engine.sinks import write_frames
    from engine.warmup import warmup

    eng = engine.Engine.from_paths()
    warmup(eng.ruleset)
    out_dir = Path(tempfile.mkdtemp())
    runs = []
    for _ in range(repeat):
        import gc
        gc.collect()
        base = _status("VmRSS")
        _reset_peak()
        t = time.perf_counter()
        res = eng.score(path, patients)
        t_write = time.perf_counter()
        write_frames([(res.quarantine, out_dir / "q.quarantine.parquet", "quarantine"),
                      (res.queue, out_dir / "q.parquet", "alerts")])
        end = time.perf_counter()
        runs.append({"wall_s": end - t, "write_s": end - t_write,
                     "stages": dict(res.timings), "alerts": res.queue.height,
                     "peak_extra_bytes": _status("VmHWM") - base, "rows": res.report.rows_in})
        del res
    return {"runs": runs, "chunk_rows": engine.pipeline.CHUNK_ROWS,
            "workers": engine.pipeline.WORKERS,
            "allocators": {k: os.environ.get(k)
                           for k in ("_RJEM_MALLOC_CONF", "MIMALLOC_PURGE_DELAY")}}


def run_child(kind: str, *args) -> dict:
    r = subprocess.run([sys.executable, "-m", "benchmarks.pipeline", "--child", kind,
                        *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_command(path: str, patients: str, model: str = "none") -> dict:
    """The whole command in a new process; its peak RSS from the kernel's accounting.
    ``model``: ``none`` (the rules alone) or ``default`` (the bundled risk model, as the
    command runs when not told otherwise)."""
    out = Path(tempfile.mkdtemp()) / "queue.parquet"
    veille = Path(sys.executable).with_name("veille")
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", str(veille), "score", path, "--patients",
                        patients, "--out", str(out), "--top", "0", "--model", model,
                        "--lang", "en"],
                       capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"veille score failed:\n{r.stderr[-3000:]}")
    peak_kb = int(r.stderr.strip().splitlines()[-1])
    line = next(x for x in r.stdout.splitlines() if x.startswith("time"))
    return {"wall_s": wall, "peak_rss_bytes": peak_kb * 1024, "reported": line.strip()}


# -- driver -----------------------------------------------------------------------------------

def bench(rows: int, tmp: Path, repeat: int, seed: int) -> dict:
    cohort = make_cohort(rows, tmp / f"cohort-{rows}", seed)
    read = min((run_child("read", cohort["telemetry"]) for _ in range(repeat)),
               key=lambda r: r["read_s"])
    eng = run_child("engine", cohort["telemetry"], cohort["patients_file"], repeat)
    best = min(eng["runs"], key=lambda r: r["wall_s"])
    peak = max(r["peak_extra_bytes"] for r in eng["runs"])      # the first run's, usually
    command = min((run_command(cohort["telemetry"], cohort["patients_file"])
                   for _ in range(repeat)), key=lambda r: r["wall_s"])
    with_model = min((run_command(cohort["telemetry"], cohort["patients_file"], "default")
                      for _ in range(repeat)), key=lambda r: r["wall_s"])
    n = cohort["rows"]
    return {
        "rows": n, "patients": cohort["patients"], "days": DAYS, "seed": seed,
        "read": read, "engine": eng, "command": command, "command_with_model": with_model,
        "cpu_count": os.cpu_count(),
        "summary": {
            "read_s": read["read_s"],
            "engine_wall_s": best["wall_s"], "engine_rows_per_s": n / best["wall_s"],
            "engine_stages_s": best["stages"] | {"write": best["write_s"]},
            "engine_peak_extra_over_input": peak / read["input_rss_bytes"],
            "engine_peak_extra_mb": peak / 2**20,
            "input_rss_mb": read["input_rss_bytes"] / 2**20,
            "command_wall_s": command["wall_s"], "command_rows_per_s": n / command["wall_s"],
            "command_peak_rss_mb": command["peak_rss_bytes"] / 2**20,
            "command_model_wall_s": with_model["wall_s"],
            "command_model_rows_per_s": n / with_model["wall_s"],
            "command_model_peak_rss_mb": with_model["peak_rss_bytes"] / 2**20,
            "x_read": best["wall_s"] / read["read_s"],
        }}


def print_summary(res: dict) -> None:
    s = res["summary"]
    stages = ", ".join(f"{k} {v:.2f}" for k, v in s["engine_stages_s"].items())
    print(f"\n{res['rows']:,} rows, {res['patients']:,} patients, {res['days']} days "
          f"(telemetry in memory: {s['input_rss_mb']:.0f} MiB)")
    print(f"  read the Parquet file      {s['read_s']:7.2f} s")
    print(f"  Engine.score + write       {s['engine_wall_s']:7.2f} s  "
          f"{s['engine_rows_per_s'] / 1e6:5.2f} M rows/s  ({s['x_read']:.1f}x the read)  "
          f"peak+ {s['engine_peak_extra_mb']:.0f} MiB = {s['engine_peak_extra_over_input']:.2f}x "
          f"the telemetry")
    print(f"    stages (s, summed over chunks; two chunks run at once): {stages}")
    print(f"  veille score (new process) {s['command_wall_s']:7.2f} s  "
          f"{s['command_rows_per_s'] / 1e6:5.2f} M rows/s  peak RSS "
          f"{s['command_peak_rss_mb']:.0f} MiB")
    print(f"    with the bundled model   {s['command_model_wall_s']:7.2f} s  "
          f"{s['command_model_rows_per_s'] / 1e6:5.2f} M rows/s  peak RSS "
          f"{s['command_model_peak_rss_mb']:.0f} MiB")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, action="append",
                    help="rows of telemetry to generate (repeatable); default 1e6 and 1e7")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        res = (child_read(*rest) if kind == "read"
               else child_engine(rest[0], rest[1], int(rest[2])))
        print(json.dumps(res))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows or [1_000_000, 10_000_000]:
            res = bench(rows, Path(tmp), args.repeat, args.seed)
            print_summary(res)
            out = RESULTS / f"pipeline-{rows}.json"
            out.with_suffix(".json.tmp").write_text(json.dumps(res, indent=2))
            out.with_suffix(".json.tmp").replace(out)
            print(f"  -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
