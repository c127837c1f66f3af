"""Soak: many consecutive incremental runs on a growing store (a batch every few hours of a
cohort's history), with flat memory and every alert exactly once — the store equals one run
over everything. 24 runs in the default suite, 200 with ``-m slow``."""
from __future__ import annotations

import gc
import resource

import duckdb
import pytest
from polars.testing import assert_frame_equal

from tests.test_incremental import alerts, cohort, eng, score  # noqa: F401  (fixtures)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _soak(eng, cohort, tmp_path, runs):   # noqa: F811
    tel, pats, start = cohort
    span = tel["ts"].max() - start
    step = span / runs
    store = tmp_path / "q.duckdb"
    rss = []
    for k in range(runs):
        a, b = start + k * step, start + (k + 1) * step
        part = tel.filter((tel["ts"] >= a) & ((tel["ts"] < b) if k < runs - 1 else True))
        if part.height:
            score(eng, part, pats, store)
        gc.collect()
        rss.append(_rss_mb())
    once = tmp_path / "once.duckdb"
    score(eng, tel, pats, once)
    got = alerts(store)
    assert_frame_equal(got, alerts(once))                       # exactly the one-shot alerts
    assert got["alert_id"].n_unique() == got.height             # each once
    with duckdb.connect(str(store), read_only=True) as con:
        n_runs, new = con.execute("select count(*), sum(new_readings) from runs").fetchone()
    assert new == tel.height                                    # every reading once
    # memory is flat: the last quarter of the runs grows by less than 15 % of the first
    # quarter's level (a leak of one batch per run would grow it linearly)
    q = max(1, runs // 4)
    early, late = sum(rss[q:2 * q]) / q, sum(rss[-q:]) / q
    assert late < early * 1.15 + 30, (early, late, rss)
    return n_runs


def test_a_short_soak(eng, cohort, tmp_path):        # noqa: F811
    assert _soak(eng, cohort, tmp_path, 24) >= 20


@pytest.mark.slow
def test_200_incremental_runs(eng, cohort, tmp_path):    # noqa: F811
    assert _soak(eng, cohort, tmp_path, 200) >= 190
