"""Queue ranking, stable ids, grouping per patient; sinks write atomically in every format."""
from __future__ import annotations

import datetime as dt
import json
import os

import duckdb
import polars as pl
import pytest

from engine.errors import OutputError
from engine.queue import QUEUE_COLUMNS, alert_id, alert_ids, build_queue, summary
from engine.sinks import write_frame

T = dt.datetime(2026, 1, 10, 8, tzinfo=dt.timezone.utc)


def episodes(rows):
    cols = ["patient_id", "rule_id", "severity", "opened_at", "resolved_at"]
    df = pl.DataFrame([dict(zip(cols, r)) for r in rows],
                      schema={"patient_id": pl.String, "rule_id": pl.String, "severity": pl.String,
                              "opened_at": pl.Datetime("us", "UTC"),
                              "resolved_at": pl.Datetime("us", "UTC")})
    return df.with_columns(pack=pl.col("rule_id").str.split(".").list.first(),
                           title=pl.lit("t"), last_seen_at=pl.col("opened_at"),
                           condition_since=pl.col("opened_at"),
                           evidence=pl.lit('{"x": 1}'), reason=pl.lit("r"))


def test_priority_order_severity_then_waiting_time():
    h = dt.timedelta(hours=1)
    q = build_queue(episodes([
        ("A", "hf.low", "low", T, None),
        ("B", "hf.high", "high", T + h, None),
        ("C", "hf.high", "high", T, None),           # waited longer than B
        ("D", "hf.med", "medium", T, None),
        ("E", "hf.high", "high", T - h, T),          # resolved: no priority, last
    ]))
    assert q.schema == pl.Schema(QUEUE_COLUMNS)
    open_q = q.filter(pl.col("status") == "open").sort("priority")
    assert open_q["patient_id"].to_list() == ["C", "B", "D", "A"]
    assert open_q["priority"].to_list() == [1, 2, 3, 4]
    assert q.filter(pl.col("status") == "resolved")["priority"].null_count() == 1
    assert summary(q) == {"high": 2, "medium": 1, "low": 1, "patients": 4, "resolved": 1}


def test_risk_breaks_ties_within_a_tier_and_grouping():
    q = build_queue(episodes([("A", "x.a", "high", T, None), ("B", "x.a", "high", T, None),
                              ("A", "x.b", "low", T, None)]),
                    risk=pl.DataFrame({"patient_id": ["A", "B"], "risk": [0.1, 0.8]}))
    assert q["patient_id"].to_list() == ["B", "A", "A"]       # grouped per patient
    assert q["patient_rank"].to_list() == [1, 2, 2]
    assert q.filter(pl.col("patient_id") == "A")["priority"].to_list() == [2, 3]


def test_alert_ids_are_stable_and_distinct():
    a = alert_id("P1", "hf.x", T)
    assert a == alert_id("P1", "hf.x", T) and len(a) == 20
    assert a != alert_id("P1", "hf.x", T + dt.timedelta(seconds=1))
    assert a != alert_id("P2", "hf.x", T)
    e = episodes([("A", "x.a", "high", T, None), ("B", "x.a", "low", T, None)])
    assert build_queue(e)["alert_id"].to_list() == build_queue(e.reverse())["alert_id"].to_list()


def test_empty_queue_has_the_schema():
    assert build_queue(episodes([])).schema == pl.Schema(QUEUE_COLUMNS)


@pytest.mark.parametrize("ext", [".parquet", ".jsonl", ".csv", ".duckdb"])
def test_sinks_round_trip(tmp_path, ext):
    q = build_queue(episodes([("A", "x.a", "high", T, None), ("B", "x.b", "low", T, T)]))
    path = write_frame(q, tmp_path / f"sub/queue{ext}")
    if ext == ".parquet":
        assert pl.read_parquet(path).equals(q)
    elif ext == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert [r["patient_id"] for r in rows] == ["A", "B"]
        assert rows[0]["evidence"] == {"x": 1}            # embedded object, not escaped text
    elif ext == ".csv":
        assert pl.read_csv(path).height == 2
    else:
        con = duckdb.connect(str(path), read_only=True)
        assert con.sql("select count(*) from alerts").fetchall()[0][0] == 2
        con.close()
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temp file left behind


def test_duckdb_sink_keeps_other_tables(tmp_path):
    db = tmp_path / "store.duckdb"
    con = duckdb.connect(str(db))
    con.sql("create table keep as select 1 as x")
    con.close()
    q = build_queue(episodes([("A", "x.a", "high", T, None)]))
    write_frame(q, db, table="alerts")
    write_frame(q, db, table="alerts")                       # replace, not append
    con = duckdb.connect(str(db), read_only=True)
    assert con.sql("select count(*) from alerts").fetchall()[0][0] == 1
    assert con.sql("select x from keep").fetchall()[0][0] == 1
    con.close()


def test_bad_output_paths(tmp_path):
    q = build_queue(episodes([]))
    with pytest.raises(OutputError, match="cannot tell the output format"):
        write_frame(q, tmp_path / "queue.xlsx")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create the folder"):
        write_frame(q, blocker / "queue.parquet")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_folder(tmp_path):  # pragma: no cover - CI runs as root
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(OutputError):
        write_frame(build_queue(episodes([])), ro / "q.parquet")


def test_alert_ids_of_a_frame_are_the_row_by_row_ids():
    times = [T, T + dt.timedelta(microseconds=1), T + dt.timedelta(seconds=59, microseconds=5),
             T.replace(microsecond=999_999)]
    ids = ["P1", "patient é", "P\x1fQ", "P1"]
    df = pl.DataFrame({"patient_id": ids, "rule_id": ["hf.x", "copd.y", "hf.x", "z"],
                       "opened_at": times})
    for frame in (df, df.with_columns(pl.col("opened_at").dt.convert_time_zone("Europe/Paris")),
                  df.with_columns(pl.lit(dt.datetime(999, 5, 1, tzinfo=dt.timezone.utc))
                                  .alias("opened_at"))):
        want = [alert_id(*row) for row in frame.iter_rows()]
        assert alert_ids(frame).to_list() == want
