"""The pipeline: the stages chained by hand, as the README shows, give exactly Engine.score;
chunking by whole patients changes nothing."""
from __future__ import annotations

import pytest
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


@pytest.mark.parametrize("chunk_rows", [1, 123_457])
def test_chunks_of_whole_patients_change_nothing(engine_result, chunk_rows):
    from engine.pipeline import evaluate_packs

    res = engine_result
    eps = evaluate_packs(engine.Engine.from_paths().ruleset.packs, res.clean, res.patients,
                         until=res.as_of, chunk_rows=chunk_rows)
    assert_frame_equal(eps, res.episodes)
