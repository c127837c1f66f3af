"""Write the corpus of deliberately bad telemetry files into this folder.

    .venv/bin/python data_samples/dirty/make_dirty.py [OUT_DIR]

Each entry of ``CASES`` is one kind of bad input and what veille must do with it: either refuse
the file with a message that contains ``error`` (file-level problems), or quarantine the rows with
the given reasons while the row accounting still reconciles (row-level problems). The test suite
(tests/test_ingest_corpus.py) rebuilds the corpus in a temporary folder and checks every case.
"""
from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import polars as pl

T0 = "2026-01-05T08:00:00Z"
GOOD = {"patient_id": ["P001", "P001"], "ts": ["2026-01-05T08:00:00Z", "2026-01-06T08:00:00Z"],
        "metric": ["weight", "weight"], "value": ["81.2", "81.4"], "unit": ["kg", "kg"]}


def _csv(rows: list[tuple], header=("patient_id", "ts", "metric", "value", "unit")) -> str:
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    return "\n".join(lines) + "\n"


def _ok(*extra: tuple) -> list[tuple]:
    return [("P001", "2026-01-05T08:00:00Z", "weight", "81.2", "kg"), *extra]


# name -> (file name, writer(path), expectation)
#   expectation: ("error", substring of the message) or ("quarantine", {reason: count}, used, collapsed)
CASES: dict[str, tuple] = {
    "empty_file": ("empty.csv", lambda p: p.write_bytes(b""), ("error", "empty")),
    "header_only": ("header_only.csv", lambda p: p.write_text(_csv([])), ("error", "no rows")),
    "missing_column": ("missing_value_column.csv",
                       lambda p: p.write_text("patient_id,ts,metric\nP001,2026-01-05T08:00Z,weight\n"),
                       ("error", "missing the required column(s) value")),
    "wrong_type_epoch_ts": ("epoch_ts.parquet", lambda p: pl.DataFrame(
        {"patient_id": ["P001"], "ts": [1767600000], "metric": ["weight"], "value": [80.0]}
    ).write_parquet(p), ("error", "column 'ts': has type Int64")),
    "wrong_type_value_list": ("list_value.parquet", lambda p: pl.DataFrame(
        {"patient_id": ["P001"], "ts": [T0], "metric": ["weight"], "value": [[80.0, 81.0]]}
    ).write_parquet(p), ("error", "column 'value'")),
    "not_parquet": ("csv_bytes.parquet", lambda p: p.write_text(_csv(_ok())),
                    ("error", "cannot be read as PARQUET")),
    "truncated_parquet": ("truncated.parquet", lambda p: (
        pl.DataFrame(GOOD).write_parquet(p), p.write_bytes(p.read_bytes()[:40])),
        ("error", "cannot be read as PARQUET")),
    "unknown_extension": ("telemetry.xlsx", lambda p: p.write_bytes(b"PK\x03\x04"),
                          ("error", "unknown telemetry format")),
    "duckdb_missing_table": ("store.duckdb:vitals", None, ("error", "has no table 'vitals'")),
    "unknown_metric": ("unknown_metric.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2026-01-06T08:00:00Z", "blood_sugar", "5.5", "mmol/L"),
        ("P001", "2026-01-06T08:00:00Z", "9999-9", "1", None)))),
        ("quarantine", {"unknown_metric": 2}, 1, 0)),
    "naive_timestamp": ("naive_ts.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2026-01-06 08:00:00", "weight", "81.0", "kg")))),
        ("quarantine", {"naive_timestamp": 1}, 1, 0)),
    "unparseable_timestamp": ("bad_ts.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "06/01/2026 8h", "weight", "81.0", "kg"),
        ("P001", "2026-13-45T99:00Z", "weight", "81.0", "kg")))),
        ("quarantine", {"unparseable_timestamp": 2}, 1, 0)),
    "missing_timestamp": ("missing_ts.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "", "weight", "81.0", "kg")))), ("quarantine", {"missing_timestamp": 1}, 1, 0)),
    "missing_patient": ("missing_patient.csv", lambda p: p.write_text(_csv(_ok(
        ("", "2026-01-06T08:00:00Z", "weight", "81.0", "kg")))),
        ("quarantine", {"missing_patient_id": 1}, 1, 0)),
    "missing_value": ("missing_value.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2026-01-06T08:00:00Z", "weight", "NA", "kg"),
        ("P001", "2026-01-07T08:00:00Z", "weight", "", "kg")))),
        ("quarantine", {"missing_value": 2}, 1, 0)),
    "text_value": ("text_value.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2026-01-06T08:00:00Z", "weight", "eighty", "kg"),
        ("P001", "2026-01-07T08:00:00Z", "weight", "81.0kg", "kg")))),
        ("quarantine", {"unparseable_value": 2}, 1, 0)),
    "nan_inf": ("nan_inf.parquet", lambda p: pl.DataFrame(
        {"patient_id": ["P001"] * 4, "ts": [T0, "2026-01-06T08:00Z", "2026-01-07T08:00Z",
                                             "2026-01-08T08:00Z"],
         "metric": ["weight"] * 4, "value": [81.0, float("nan"), float("inf"), float("-inf")]}
    ).write_parquet(p), ("quarantine", {"non_finite_value": 3}, 1, 0)),
    "huge_values": ("huge.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2026-01-06T08:00:00Z", "weight", "1e308", "kg"),
        ("P001", "2026-01-06T09:00:00Z", "heart_rate", "-72", "/min"),
        ("P001", "2026-01-06T10:00:00Z", "spo2", "104", "%"),
        ("P001", "2026-01-06T11:00:00Z", "consciousness", "1.5", None)))),
        ("quarantine", {"implausible_value": 4}, 1, 0)),
    "wrong_unit": ("wrong_unit.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2026-01-06T08:00:00Z", "weight", "12.5", "stone"),
        ("P001", "2026-01-06T08:00:00Z", "temp", "37.2", "kg")))),
        ("quarantine", {"unconvertible_unit": 2}, 1, 0)),
    "unit_mixup_fraction": ("spo2_fraction_without_unit.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2026-01-06T08:00:00Z", "spo2", "0.94", None)))),
        ("quarantine", {"implausible_value": 1}, 1, 0)),
    "future_timestamp": ("future.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2099-01-06T08:00:00Z", "weight", "81.0", "kg")))),
        ("quarantine", {"future_timestamp": 1}, 1, 0)),
    "clock_reset": ("clock_reset.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "1970-01-01T00:04:00Z", "weight", "81.0", "kg"),
        ("P001", "2000-01-01T00:00:00Z", "weight", "81.1", "kg")))),
        ("quarantine", {"timestamp_too_early": 2}, 1, 0)),
    "conflicting_duplicate": ("conflict.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2026-01-06T08:00:00Z", "weight", "81.0", "kg"),
        ("P001", "2026-01-06T08:00:00Z", "weight", "79.0", "kg")))),
        ("quarantine", {"conflicting_duplicate": 2}, 1, 0)),
    "exact_duplicate": ("exact_dup.csv", lambda p: p.write_text(_csv(_ok(
        ("P001", "2026-01-05T08:00:00Z", "weight", "81.2", "kg"),
        ("P001", "2026-01-05T09:00:00+01:00", "weight", "179.015", "lb")))),
        ("quarantine", {}, 1, 2)),
    "unordered_and_converted": ("unordered.csv", lambda p: p.write_text(_csv([
        ("P002", "2026-01-07T08:00:00Z", "temp", "100.4", "[degF]"),
        ("P002", "2026-01-05T08:00:00Z", "glucose", "5.5", "mmol/L"),
        ("P001", "2026-01-06T08:00:00+01:00", "weight", "176", "lb"),
        ("P001", "2026-01-05T08:00:00Z", "59408-5", "0.93", "1")])),
        ("quarantine", {}, 4, 0)),
    "semicolon_decimal_comma": ("french_export.csv", lambda p: p.write_text(
        "patient_id;ts;metric;value\nP001;2026-01-05T08:00:00+01:00;temp;37,8\n"),
        ("quarantine", {}, 1, 0)),
    "latin1_and_ragged_lines": ("one_bad_line.csv", lambda p: p.write_bytes(
        _csv(_ok()).encode() + "Pépin,2026-01-05T08:00:00Z,weight,80.0,kg\n".encode("latin-1")
        + b"P002,2026-01-05T08:00:00Z,weight\n"
        + b"P003,2026-01-05T08:00:00Z,weight,70.5,kg\n"),
        ("quarantine", {"malformed_row": 2}, 2, 0)),
    "duplicated_header": ("dup_header.csv", lambda p: p.write_text(
        _csv(_ok(), header=("patient_id", "ts", "metric", "value", "value"))),
        ("error", "names column 'value' twice")),
    "binary_garbage": ("garbage.csv", lambda p: p.write_bytes(bytes(range(256)) * 8),
                       ("error", "")),
}


def _duckdb_store(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.sql("create table telemetry as select 'P001' as patient_id, "
            "timestamptz '2026-01-05 08:00:00+00' as ts, 'weight' as metric, 81.0 as value")
    con.close()


def build(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (fname, writer, _) in CASES.items():
        if writer is None:  # the DuckDB case: a real database without the named table
            db = out / fname.split(":")[0]
            if db.exists():
                db.unlink()
            _duckdb_store(db)
            paths[name] = Path(str(out / fname))
            continue
        p = out / fname
        writer(p)
        paths[name] = p
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    for case, path in build(target).items():
        print(f"{case:28s} {path}")
