"""A coverage-guided fuzz (atheris, libFuzzer) of the rule loader and of ingest, bounded in time.

    uv sync --group fuzz        # atheris: the optional `fuzz` dependency group
    uv run --group fuzz python tests/faults/atheris_fuzz.py rules|ingest|both CORPUS_DIR \\
        -max_total_time=60

``rules``: the bytes as a rule pack file, loaded by :func:`engine.ruleset.load_rules`;
``ingest``: the first byte picks the format (CSV, Parquet, Arrow IPC) and the rest is the
file, read by :func:`engine.ingest.ingest`; ``both``: a first byte 0xFF for a rule pack, else
ingest (one process: starting one, instrumented, takes seconds). Only veille's own errors may
come out (and ingest's row accounting must balance): anything else is a finding — atheris
prints the traceback, writes the input as ``crash-<sha1>`` in the working folder and exits
non-zero. ``CORPUS_DIR`` is seeded first with valid inputs (a pack, CSV, Parquet with page
checksums, Arrow) and with the inputs earlier campaigns found (:data:`FOUND`), which libFuzzer
runs, then mutates; each input is written to ``CORPUS_DIR.inputs/``; veille's Python modules
are instrumented for coverage. ``tests/faults/test_fault_atheris.py`` runs ``both`` for a few
seconds when atheris is installed.
"""
from __future__ import annotations

import datetime as dt
import io
import sys
from pathlib import Path

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
FORMATS = (".csv", ".parquet", ".arrow")
PACK = b"""pack: base
version: "1"
scope: {cohort: [heart_failure, older_home], min_age: 18, max_age: 110}
detectors:
  weight_gain_3d: {metric: weight, fn: delta, window: 3d}
params:
  gain_3d: {value: 2 kg, min: 1 kg, max: 4 kg}
rules:
  - id: base.gain
    title: Weight gain
    when: weight_gain_3d > gain_3d and weight > 40 kg
    severity: high
    for: 1h
    reason: "+{weight_gain_3d} in 3 days"
tests:
  - name: a gain fires
    cohort: heart_failure
    series:
      weight: [[0d, 80.0], [1d, 80.8], [2d, _], [3d, 82.5]]
    expect:
      - {rule: base.gain, at: 3d, severity: high}
"""
CSV = (b"patient_id,ts,metric,value,unit\n"
       b"P1,2026-01-05T08:00:00Z,weight,81.5,kg\n"
       b"P1,2026-01-06T08:00:00+01:00,spo2,93,%\n"
       b"P2,2026-01-05 09:00:00,heart_rate,,bpm\n")

WORK = Path(".")          # where each input is written as a file (main: beside the corpus)
INSTRUMENTED = ["engine.ruleset", "engine.ingest", "engine.sources", "engine.parquet_checksums",
                "engine.patients", "engine.units", "engine.schema", "engine.durations"]
KERNELS = ["engine.ingest.encode", "engine.ingest.kernels"]


#: inputs the fuzz found that once raised something else than veille's errors: run first, each
#: time (libFuzzer runs its corpus before it mutates)
FOUND = [
    b"\x00patient_id,ts,metric,\rvalue\nP1,2026-01-05T08:00Z,weight,81.5\n",  # csv.Error
    b"\x00patient_id,ts,metric,value\nP1,2026-01-05\r09:00Z,weight,80\nP2,x,spo2,\"9\n",
    b"\x01" + (Path(__file__).with_name("parquet_corpus")              # a polars panic
                / "page_header_out_of_range.parquet").read_bytes(),
]


def seeds() -> dict[str, list[bytes]]:
    """Valid inputs of each target, for libFuzzer to mutate, and the inputs found before."""
    import polars as pl
    import pyarrow.parquet as pq

    frame = pl.read_csv(io.BytesIO(CSV), infer_schema=False)
    parquet, arrow = io.BytesIO(), io.BytesIO()
    pq.write_table(frame.to_arrow(), parquet, compression="none", write_page_checksum=True)
    frame.write_ipc(arrow)
    return {"rules": [PACK],
            "ingest": [b"\x00" + CSV, b"\x01" + parquet.getvalue(), b"\x02" + arrow.getvalue(),
                       *FOUND]}


def rules(data: bytes) -> None:
    from engine.errors import RuleError
    from engine.ruleset import load_rules

    path = WORK / "pack.yaml"
    path.write_bytes(data)
    try:
        load_rules([path])
    except RuleError:
        pass


def ingest(data: bytes) -> None:
    from engine.errors import VeilleError
    from engine.ingest import ingest as read

    if not data:
        return
    path = WORK / f"telemetry{FORMATS[data[0] % len(FORMATS)]}"
    path.write_bytes(data[1:])
    try:
        res = read(str(path), now=NOW)
    except VeilleError:
        return
    assert res.report.balanced, res.report


def both(data: bytes) -> None:
    """The two targets in one campaign (one start, the slow part): a first byte of 0xFF makes
    the rest a rule pack, any other an ingest input."""
    if data[:1] == b"\xff":
        rules(data[1:])
    else:
        ingest(data)


def main(argv: list[str]) -> None:
    import atheris

    global WORK
    target, corpus, *options = argv[1:]
    WORK = Path(corpus).with_name(Path(corpus).name + ".inputs")    # beside the corpus
    WORK.mkdir(parents=True, exist_ok=True)
    # veille's Python code is instrumented for coverage; its numba kernels cannot be (numba
    # compiles their bytecode: atheris' probes in it fail to type)
    with atheris.instrument_imports(include=INSTRUMENTED, exclude=KERNELS):
        import engine.ingest  # noqa: F401
        import engine.parquet_checksums  # noqa: F401
        import engine.ruleset  # noqa: F401
        import engine.sources  # noqa: F401
    folder = Path(corpus)
    folder.mkdir(parents=True, exist_ok=True)
    found = seeds()
    found["both"] = [b"\xff" + s for s in found["rules"]] + found["ingest"]
    for i, seed in enumerate(found[target]):
        (folder / f"seed-{i}").write_bytes(seed)
    atheris.Setup([argv[0], str(folder), *options],
                  {"rules": rules, "ingest": ingest, "both": both}[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
