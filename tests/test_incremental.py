"""Incremental runs (engine/incremental.py): scoring in batches into a store gives exactly the
alerts, episodes and ids of scoring everything at once; re-running a batch changes nothing;
late readings re-score their patients; the episode kernel resumes exactly from a saved state."""
from __future__ import annotations

import datetime as dt
import shutil

import duckdb
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from cli import app
from engine.commands.score import hygiene_config
from engine.detectors import resolve_spec
from engine.episodes import NEVER, OPENED, RUN, resume_kernel
from engine.errors import InputError
from engine.incremental import horizons, open_history, spec_horizon
from engine.paths import sample_cohort
from engine.pipeline import Engine, load_inputs
from engine.store import write_run
from tests.test_ruleset_semantics import MIN, reference, state_series

DAY = 24 * 60 * MIN
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
#: what must match between two stores: everything but the run bookkeeping (first/last run,
#: re-raises, the team's workflow)
COLUMNS = ("alert_id, patient_id, rule_id, pack, severity, risk, risk_factors, status, "
           "opened_at, last_seen_at, resolved_at, title, reason, evidence, labels, priority, "
           "patient_rank, suppressed_by, flapping, flap_count, group_key, group_size, "
           "group_rules")


# ------------------------------------------------------------------------------------------
# the episode kernel resumed from a saved state
# ------------------------------------------------------------------------------------------
def _times(ts, o, s, l, z, a, n, since_default=None):
    out = []
    for i in range(a, a + n):
        since = ts[s[i]] if s[i] >= 0 else since_default
        out.append((ts[o[i]], since, ts[l[i]], ts[z[i]] if z[i] >= 0 else None))
    return out


@given(st.lists(state_series(), min_size=1, max_size=4), st.data(),
       st.sampled_from([0, 5, 10, 20]), st.sampled_from([0, 10, 30]),
       st.sampled_from([0, 5, 15]), st.sampled_from([1, 2, 3]), st.booleans())
@settings(max_examples=150, deadline=None)
def test_a_series_run_in_two_pieces_equals_it_run_whole(many, data, for_m, cool_m, res_m,
                                                        confirm, hysteresis):
    ts = np.concatenate([t for t, *_ in many]).astype(np.int64)
    state = np.concatenate([s for _, s, *_ in many]).astype(np.int8)
    fresh = np.concatenate([f for _, _, f, _ in many]).astype(np.bool_)
    resolving = np.concatenate([r for *_, r in many]).astype(np.int8)
    offsets = np.cumsum([0] + [len(t) for t, *_ in many]).astype(np.int64)
    cut = [data.draw(st.integers(0, len(t))) for t, *_ in many]
    args = (for_m * MIN, cool_m * MIN, res_m * MIN)

    def kernel(ts_, state_, fresh_, res_, offsets_, **kw):
        return resume_kernel(ts_, state_, offsets_, *args, fresh_, confirm,
                             resolving=res_ if hysteresis else None, **kw)

    whole = kernel(ts, state, fresh, resolving, offsets)
    # the first pieces alone, as an earlier run saw them
    first_rows = np.concatenate([np.arange(offsets[k], offsets[k] + c)
                                 for k, c in enumerate(cut)]).astype(np.int64)
    off1 = np.cumsum([0] + cut).astype(np.int64)
    first = kernel(ts[first_rows], state[first_rows], fresh[first_rows],
                   resolving[first_rows], off1)
    # the rest, resumed from the first pieces' final state
    second = kernel(ts, state, fresh, resolving, offsets,
                    start=offsets[:-1] + np.asarray(cut, np.int64), init=first[6])
    assert np.array_equal(second[6], whole[6])
    ts1 = ts[first_rows]
    for k, (t, st_, fr, rs) in enumerate(many):
        eps = _times(ts1, *first[:4], off1[k], first[4][k])
        if first[6][OPENED, k] != NEVER:           # the episode open at the cut continues
            o, s, _, _ = eps[-1]
            res = second[7][1, k]
            eps[-1] = (o, s, second[7][0, k], ts[res] if res >= 0 else None)
        eps += _times(ts, *second[:4], offsets[k], second[4][k],
                      since_default=first[6][RUN, k])
        assert eps == _times(ts, *whole[:4], offsets[k], whole[4][k])
        want, _ = reference(t, st_, *args, fr, confirm, rs if hysteresis else None)
        assert eps == want


# ------------------------------------------------------------------------------------------
# how far back a run reads
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, horizon", [
    ({"metric": "weight", "fn": "delta", "window": "3d"}, 3 * DAY),
    ({"metric": "heart_rate", "fn": "median", "window": "14d", "lag": "1d"}, 15 * DAY),
    ({"metric": "steps", "fn": "sum", "window": "7d"}, 7 * DAY),
    ({"metric": "heart_rate", "fn": "zscore", "window": "14d", "lag": "1d"}, 15 * DAY),
    ({"metric": "glucose", "fn": "minutes_above", "threshold": 250, "window": "120m",
      "interval": "5m"}, 120 * MIN),
    ({"metric": "icope_cognition", "fn": "previous"}, 0),
    ({"metric": "icope_cognition", "fn": "previous", "gap": "60d"}, 60 * DAY),
    ({"metric": "weight", "fn": "since_last"}, 0),
    ({"metric": "weight", "fn": "silence", "limit": "2d"}, 0),
    ({"metric": "weight", "fn": "ewma", "halflife": "2d"}, None),
    ({"metric": "weight", "fn": "macd", "fast": "15h", "slow": "3d"}, None),
    ({"metric": "weight", "fn": "cusum_up", "baseline": "14d", "k": 0.5}, None),
    ({"metric": "glucose", "fn": "time_below", "threshold": 54}, None),
    ({"metric": "glucose", "fn": "events_below", "threshold": 54, "window": "1d"}, None),
])
def test_each_detector_kind_has_its_read_back_horizon(spec, horizon):
    assert spec_horizon(resolve_spec("x", spec)) == horizon


def test_a_metric_reads_back_its_detectors_horizon_plus_their_staleness(eng):
    got = horizons(eng.ruleset.packs)
    assert got["glucose"] is None                       # time_below: the whole series
    assert got["weight"] is None                        # macd (EWMAs): the whole series
    assert got["heart_rate"] is not None and got["heart_rate"] >= 14 * DAY
    assert "consciousness" not in got                   # raw values: the latest reading only


# ------------------------------------------------------------------------------------------
# batches into a store against one run
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort():
    """Six patients of each programme of the sample, their first 10 days."""
    tpath, ppath = sample_cohort()
    pats = pl.read_parquet(ppath)
    ids = pats.sort("patient_id").group_by("programme", maintain_order=True).head(6)[
        "patient_id"].to_list()
    pats = pats.filter(pl.col("patient_id").is_in(ids))
    tel = pl.read_parquet(tpath).filter(pl.col("patient_id").is_in(ids))
    start = tel["ts"].min().replace(hour=0, minute=0, second=0, microsecond=0)
    tel = tel.filter(pl.col("ts") < start + dt.timedelta(days=10))
    return tel, pats, start


@pytest.fixture(scope="module")
def eng():
    hy = hygiene_config("08:00-18:00", "mon-fri", "Europe/Paris", "3/72h", "none")
    return Engine.from_paths(lang="en", hygiene=hy)


def score(eng, frame, pats, store, as_of=None):
    """One ``veille score BATCH --store STORE`` as the command runs it."""
    inputs = load_inputs(frame, pats, now=NOW)
    h = open_history(store, eng, inputs.ingest.clean["ts"].max(), as_of)
    result = eng.score_inputs(inputs, as_of=h.as_of, history=h)
    return write_run(store, result, engine=eng, history=h)


def alerts(store) -> pl.DataFrame:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.sql(f"select {COLUMNS} from alerts order by alert_id").pl()
    finally:
        con.close()


def table(store, sql) -> pl.DataFrame:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def in_batches(eng, tel, pats, store, bounds):
    for a, b in zip(bounds[:-1], bounds[1:]):
        part = tel.filter((pl.col("ts") >= a) & (pl.col("ts") < b))
        if part.height:
            score(eng, part, pats, store)


@pytest.fixture(scope="module")
def at_once(cohort, eng, tmp_path_factory):
    tel, pats, _ = cohort
    store = tmp_path_factory.mktemp("once") / "q.duckdb"
    score(eng, tel, pats, store)
    got = alerts(store)
    assert got.height >= 20 and got["rule_id"].n_unique() >= 8       # a cohort worth testing
    return store, got


def test_daily_batches_give_exactly_the_alerts_of_one_run(cohort, eng, at_once, tmp_path):
    tel, pats, start = cohort
    store = tmp_path / "q.duckdb"
    in_batches(eng, tel, pats, store, [start + dt.timedelta(days=i) for i in range(11)])
    assert_frame_equal(alerts(store), at_once[1])
    episodes = "select * from episodes order by patient_id, opened_at, rule_id"
    assert_frame_equal(table(store, episodes), table(at_once[0], episodes))
    state = "select * from rule_state order by patient_id, rule_id"
    assert_frame_equal(table(store, state), table(at_once[0], state))
    runs = table(store, "select incremental, new_readings from runs order by run_id")
    assert runs["incremental"].to_list() == [False] + [True] * (runs.height - 1)
    assert runs["new_readings"].sum() == tel.height


@given(cuts=st.lists(st.integers(1, 10 * 24 * 60 - 1), min_size=1, max_size=6, unique=True))
@settings(max_examples=4, deadline=None)
def test_any_split_into_batches_gives_the_alerts_of_one_run(cohort, eng, at_once,
                                                            tmp_path_factory, cuts):
    tel, pats, start = cohort
    store = tmp_path_factory.mktemp("split") / "q.duckdb"
    bounds = [start] + [start + dt.timedelta(minutes=m) for m in sorted(cuts)] \
        + [start + dt.timedelta(days=11)]
    in_batches(eng, tel, pats, store, bounds)
    assert_frame_equal(alerts(store), at_once[1])


def test_rerunning_a_batch_changes_nothing(cohort, eng, tmp_path):
    tel, pats, start = cohort
    store = tmp_path / "q.duckdb"
    bounds = [start + dt.timedelta(days=i) for i in (0, 4, 6)]
    in_batches(eng, tel, pats, store, bounds)
    before = alerts(store)
    events = "select alert_id, run_id, event, detail from alert_events order by all"
    trail = table(store, events)
    states = table(store, "select * from rule_state order by all")
    in_batches(eng, tel, pats, store, bounds[1:])          # the last batch again
    assert_frame_equal(alerts(store), before)
    assert_frame_equal(table(store, events), trail)
    assert_frame_equal(table(store, "select * from rule_state order by all"), states)
    last = table(store, "select new_readings, late_readings, duplicates_collapsed, rows_in, "
                        "opened from runs order by run_id desc limit 1").row(0, named=True)
    assert last["new_readings"] == 0 and last["late_readings"] == 0 and last["opened"] == 0
    assert last["duplicates_collapsed"] == last["rows_in"]


def test_late_readings_rescore_their_patients_exactly(cohort, eng, at_once, tmp_path):
    tel, pats, start = cohort
    store = tmp_path / "q.duckdb"
    day = [start + dt.timedelta(days=i) for i in range(11)]
    # one patient's readings of day 2 arrive only with day 6's batch
    late = (pl.col("patient_id") == tel["patient_id"][0]) & (pl.col("ts") >= day[2]) \
        & (pl.col("ts") < day[3])
    held = tel.filter(late)
    assert held.height
    for a, b in zip(day[:-1], day[1:]):
        part = tel.filter((pl.col("ts") >= a) & (pl.col("ts") < b) & ~late)
        if a == day[6]:
            part = pl.concat([part, held])
        score(eng, part, pats, store)
    assert_frame_equal(alerts(store), at_once[1])
    run = table(store, "select late_readings, rescored_patients from runs "
                       "where late_readings > 0")
    assert run.rows() == [(held.height, 1)]


def test_a_stored_reading_sent_again_with_another_value_is_quarantined(cohort, eng,
                                                                      tmp_path):
    tel, pats, start = cohort
    store = tmp_path / "q.duckdb"
    first = tel.filter(pl.col("ts") < start + dt.timedelta(days=3))
    score(eng, first, pats, store)
    before = alerts(store)
    changed = first.head(1).with_columns(value=pl.col("value") + 1.0)
    score(eng, pl.concat([changed, first.slice(1, 5)]), pats, store)
    assert_frame_equal(alerts(store), before)
    q = table(store, "select reason, detail from quarantine where run_id = 2")
    assert q["reason"].to_list() == ["conflicting_duplicate"]
    assert "the store holds" in q["detail"][0]
    with pytest.raises(InputError, match="before the store's last run"):
        score(eng, first, pats, store, as_of=start + dt.timedelta(days=1))


def test_the_command_line_scores_batches_into_a_store(cohort, tmp_path):
    tel, pats, start = cohort
    pats.write_parquet(tmp_path / "p.parquet")
    args = ["--patients", str(tmp_path / "p.parquet"), "--model", "none", "--lang", "en"]
    once, batches = tmp_path / "once.duckdb", tmp_path / "batches.duckdb"
    tel.write_parquet(tmp_path / "all.parquet")
    r = CliRunner().invoke(app, ["score", str(tmp_path / "all.parquet"), "--store", str(once),
                                 *args])
    assert r.exit_code == 0, r.output
    for i, (a, b) in enumerate([(0, 4), (4, 10)]):
        part = tel.filter((pl.col("ts") >= start + dt.timedelta(days=a))
                          & (pl.col("ts") < start + dt.timedelta(days=b)))
        part.write_parquet(tmp_path / f"b{i}.parquet")
        r = CliRunner().invoke(app, ["score", str(tmp_path / f"b{i}.parquet"), "--store",
                                     str(batches), *args])
        assert r.exit_code == 0, r.output
    assert "new readings after" in r.output
    # re-raises follow each run's time: the rest must match
    assert_frame_equal(alerts(batches), alerts(once))
    r = CliRunner().invoke(app, ["score", str(tmp_path / "b0.parquet"), "--store",
                                 str(batches), "--as-of", start.isoformat(), *args])
    assert r.exit_code != 0 and "before the store's last run" in r.output
    assert "Traceback" not in r.output


@pytest.mark.slow
def test_the_sample_in_daily_batches_gives_the_alerts_of_one_run(eng, tmp_path):
    tpath, ppath = sample_cohort()
    tel, pats = pl.read_parquet(tpath), pl.read_parquet(ppath)
    score(eng, tel, pats, tmp_path / "once.duckdb")
    days = tel["ts"].dt.truncate("1d").unique().sort().to_list()
    in_batches(eng, tel, pats, tmp_path / "daily.duckdb",
               days + [days[-1] + dt.timedelta(days=1)])
    assert_frame_equal(alerts(tmp_path / "daily.duckdb"), alerts(tmp_path / "once.duckdb"))
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_with_a_model_each_run_rescores_the_stored_history_exactly(cohort, tmp_path):
    tel, pats, start = cohort
    tel = tel.filter(pl.col("ts") < start + dt.timedelta(days=5))
    eng = Engine.from_paths(lang="en", model="default")
    score(eng, tel, pats, tmp_path / "once.duckdb")
    in_batches(eng, tel, pats, tmp_path / "b.duckdb",
               [start + dt.timedelta(days=i) for i in (0, 3, 5)])
    got = alerts(tmp_path / "b.duckdb")
    assert got["risk"].is_not_null().any()
    assert_frame_equal(got, alerts(tmp_path / "once.duckdb"))
