"""The pipeline: the stages chained by hand, as the README shows, give exactly Engine.score;
chunking by whole patients changes nothing."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import engine
from engine import detect, episodes, ingest, patients, queue, timeline
from engine.paths import sample_cohort
from engine.ruleset import evaluate, load_rules


@pytest.fixture(scope="module")
def engine_result():
    tel, pats = sample_cohort()
    return engine.Engine.from_paths().score(str(tel), str(pats))


def test_the_stages_by_hand_equal_engine_score(engine_result):
    tel, pats_path = sample_cohort()
    rules = load_rules("rules/")
    pats = patients.load_patients(str(pats_path))
    ing = ingest.ingest(str(tel), patients=pats)
    det = detect.detect(ing.clean, detect.DetectorPlan.of(rules.packs), ing.index)
    tls = timeline.timelines(det, pats, rules.packs, until=ing.clean["ts"].max())
    eps = episodes.combine([episodes.open_episodes(tls[p.name], evaluate.conditions(
        tls[p.name], p), p) for p in rules.packs], pats)
    q = queue.build_queue(eps)
    assert_frame_equal(eps, engine_result.episodes)
    assert_frame_equal(q, engine_result.queue)


@pytest.mark.parametrize("chunk_rows", [1, 40_000, 123_457])
def test_chunks_of_whole_patients_change_nothing(engine_result, chunk_rows):
    from engine.pipeline import evaluate_packs

    res = engine_result
    eps = evaluate_packs(engine.Engine.from_paths().ruleset.packs, res.clean, res.patients,
                         until=res.as_of, chunk_rows=chunk_rows)
    assert_frame_equal(eps, res.episodes)


def test_packs_on_few_readings_are_evaluated_apart_in_fewer_chunks(engine_result):
    """The packs whose readings in scope are at most half a chunk run in chunks of their own
    (fewer: their fixed cost per chunk is most of their time); every (pack, patient) is still
    evaluated exactly once, and each job's detectors are those its packs read."""
    import numpy as np

    from engine.ingest.index import SeriesIndex
    from engine.patients import Cohort
    from engine.pipeline import _schedule, patient_row_bounds
    from engine.schema import METRIC_NAMES

    res = engine_result
    packs = engine.Engine.from_paths().ruleset.packs
    plan = detect.DetectorPlan.of(packs)
    index = SeriesIndex.of(res.clean)
    cohort = Cohort.of(index.patient_ids, res.patients)
    index = index.recode(cohort.ids)
    ts, _ = detect.arrays(res.clean)
    rows = patient_row_bounds(index, cohort.size)
    until = int(res.clean["ts"].max().timestamp() * 1e6)
    jobs = _schedule(packs, plan, ts, index, cohort, rows, until, 123_457, None)
    groups = {tuple(p.name for p in group) for group, _, _, _, _ in jobs}
    assert len(groups) == 2, groups
    light, heavy = sorted(groups, key=lambda g: "icope" not in g)
    n_light = sum(1 for g, _, _, _, _ in jobs if tuple(p.name for p in g) == light)
    assert 1 <= n_light < len(jobs) - n_light
    assert "device_silence" in heavy and "diabetes" in heavy and "news2" in light
    for group, group_plan, with_features, metrics, _ in jobs:
        assert not with_features
        assert (metrics is None) == ("device_silence" in [p.name for p in group])
        for p in group:
            for d in p.detectors.values():
                if d.kind != "silence":
                    assert plan.uses[d.column][0] in group_plan.by_metric
                if metrics is not None:     # the light packs' readings only
                    assert {METRIC_NAMES.index(m) for m in d.metrics} <= set(metrics)
    for pack in packs:
        seen = np.zeros(cohort.size, int)
        for group, _, _, _, (a, b) in jobs:
            if pack in group:
                seen[a:b] += 1
        assert (seen == 1).all(), pack.name


def test_risk_features_do_not_depend_on_the_chunks():
    """With the model, the risk features ride with the heavy packs' chunks: the same features
    (and episodes) whatever the chunk size."""
    from polars.testing import assert_frame_equal

    from engine.pipeline import evaluate_packs
    from engine.risk.features import assemble, features_pack

    tel, pats_path = sample_cohort()
    eng = engine.Engine.from_paths(model=None)
    res = eng.score(str(tel), str(pats_path))
    fpack = features_pack()
    plan = detect.DetectorPlan.of(list(eng.ruleset.packs) + [fpack])
    out = []
    for chunk_rows in (10**9, 40_000):
        parts = []
        eps = evaluate_packs(eng.ruleset.packs, res.clean, res.patients, until=res.as_of,
                             plan=plan, chunk_rows=chunk_rows, features=parts,
                             features_pack=fpack)
        out.append((eps, assemble(parts, eps), len(parts)))
    assert out[1][2] > 1
    assert_frame_equal(out[0][0], out[1][0])
    assert_frame_equal(out[0][1], out[1][1])


_PACKS = None


def _packs():
    global _PACKS
    if _PACKS is None:
        _PACKS = engine.Engine.from_paths().ruleset.packs
    return _PACKS


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10_000), patients=st.integers(8, 40), days=st.integers(2, 6),
       chunk_rows=st.integers(200, 20_000))
def test_any_schedule_gives_the_episodes_of_one_chunk(seed, patients, days, chunk_rows):
    """On random cohorts (the seven programmes, random sizes), the packs evaluated in chunks
    of any size — light packs apart from the heavy ones — give the episodes and pending rules
    of one chunk holding everyone."""
    from engine.ingest import ingest_frame
    from engine.pipeline import evaluate_packs
    from engine.synth import generate_cohort

    c = generate_cohort(patients, days=days, seed=seed)
    ing = ingest_frame(c.telemetry, patients=c.patients)
    until = ing.clean["ts"].max()
    out = []
    for rows in (10**9, chunk_rows):
        pending: list = []
        eps = evaluate_packs(_packs(), ing.clean, c.patients, until=until, chunk_rows=rows,
                             pending=pending)
        out.append((eps, episodes.combine_pending(pending, c.patients)))
    assert_frame_equal(out[0][0], out[1][0])
    assert_frame_equal(out[0][1], out[1][1])
