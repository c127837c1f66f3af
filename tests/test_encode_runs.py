"""engine.ingest.encode.rle_id: run ids read from Arrow string views equal polars' rle_id."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st

from engine.ingest.encode import rle_id

# short texts (inline in their view), long ones (in a data buffer) alike in length and first
# bytes, texts that differ only past byte 12, the empty text, non-ASCII
ALPHABET = ["", "a", "ab", "p0001", "p0002", "é", "123456789012", "123456789013",
            "1234567890123", "1234567890124", "patient-0001-aaaa-bbbb-cccc",
            "patient-0001-aaaa-bbbb-cccd", "patient-0002-aaaa-bbbb-cccc", "éééééééééééééé"]


def chunked(values: list, cuts: list[int]) -> pl.Series:
    """``values`` as one Series made of chunks cut at ``cuts`` (not rechunked)."""
    bounds = sorted({0, len(values), *(c % (len(values) + 1) for c in cuts)})
    parts = [pl.Series("c", values[a:b], dtype=pl.String) for a, b in zip(bounds, bounds[1:])]
    return pl.concat(parts, rechunk=False) if parts else pl.Series("c", [], dtype=pl.String)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=60).flatmap(
    lambda xs: st.tuples(st.just(xs), st.lists(st.integers(0, 60), max_size=4))))
def test_rle_id_equals_polars_on_chunked_text(case):
    values, cuts = case
    col = chunked([v for v in values for _ in range(1 + len(v) % 3)], cuts)   # some runs
    got = rle_id(col)
    assert got.dtype == np.uint32
    assert np.array_equal(got, col.rle_id().to_numpy())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET[:6] + [None]), min_size=1, max_size=40))
def test_rle_id_with_nulls_and_other_types_equals_polars(values):
    col = pl.Series("c", values, dtype=pl.String)
    assert np.array_equal(rle_id(col), col.rle_id().to_numpy())
    codes = pl.Series("k", [ALPHABET.index(v) if v is not None else None for v in values])
    assert np.array_equal(rle_id(codes), codes.rle_id().to_numpy())


def test_long_texts_stored_apart_are_compared_by_their_bytes():
    """Equal long ids from different chunks or buffers have different views: polars decides."""
    a = "patient-0001-aaaa-bbbb-cccc"
    col = pl.concat([pl.Series([a, a]), pl.Series([a, a + "x"]), pl.Series([a + "x"])],
                    rechunk=False)
    assert rle_id(col).tolist() == [0, 0, 0, 1, 1] == col.rle_id().to_list()


@pytest.mark.parametrize("n", [0, 1])
def test_rle_id_of_tiny_columns(n):
    col = pl.Series("c", ["x"] * n, dtype=pl.String)
    assert rle_id(col).tolist() == col.rle_id().to_list()


# -- SeriesIndex.of reads the same flags: its series equal a plain polars grouping -----------
METRICS = ["glucose", "heart_rate", "spo2", "weight", "not_a_metric"]


def _index_by_polars(frame: pl.DataFrame):
    """(offsets, patient code per series, metric name per series, ids) by polars alone."""
    runs = frame.with_row_index("row").with_columns(
        pl.struct("patient_id", "metric").rle_id().alias("run"))
    heads = runs.group_by("run", maintain_order=True).agg(pl.col("row").first(),
                                                          pl.col("patient_id").first(),
                                                          pl.col("metric").first())
    offsets = np.append(heads["row"].to_numpy(), frame.height)
    ids = heads["patient_id"].unique(maintain_order=True)
    codes = heads["patient_id"].rle_id().to_numpy()
    return offsets, codes, heads["metric"].to_list(), ids.to_list()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ALPHABET[1:]), st.sampled_from(METRICS),
                          st.integers(1, 3)), min_size=1, max_size=30),
       st.lists(st.integers(0, 90), max_size=3), st.lists(st.integers(0, 90), max_size=3))
def test_series_index_equals_polars_grouping(runs, pcuts, mcuts):
    from engine.ingest.index import SeriesIndex
    from engine.schema import METRIC_NAMES
    runs = sorted(runs)                      # clean telemetry is sorted by (patient, metric)
    pids = [p for p, _, k in runs for _ in range(k)]
    mets = [m for _, m, k in runs for _ in range(k)]
    frame = pl.DataFrame({"patient_id": chunked(pids, pcuts), "metric": chunked(mets, mcuts)})
    index = SeriesIndex.of(frame)
    offsets, codes, names, ids = _index_by_polars(frame)
    assert np.array_equal(index.offsets, offsets)
    assert np.array_equal(index.patient, codes)
    assert index.patient_ids.to_list() == ids
    assert [METRIC_NAMES[c] if c >= 0 else "not_a_metric" for c in index.metric] == names


# -- the probed heads (rows PROBE_STRIDE apart, bisection between) equal the row-by-row flags --
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ALPHABET), st.sampled_from(METRICS),
                          st.integers(1, 40)), min_size=1, max_size=40),
       st.lists(st.integers(0, 900), max_size=4), st.lists(st.integers(0, 900), max_size=4),
       st.sampled_from(["text", "enum", "categorical"]))
def test_probed_heads_equal_row_by_row_flags(runs, pcuts, mcuts, metric_type):
    from engine.ingest import index as I
    runs = sorted(runs)
    pids = [p for p, _, k in runs for _ in range(k)]
    mets = [m for _, m, k in runs for _ in range(k)]
    metric = chunked(mets, mcuts)
    if metric_type == "enum":
        metric = metric.cast(pl.Enum(sorted(METRICS)))
    elif metric_type == "categorical":
        metric = metric.cast(pl.Categorical)
    frame = pl.DataFrame({"patient_id": chunked(pids, pcuts), "metric": metric})
    offsets, codes, names, ids = _index_by_polars(frame.with_columns(pl.col("metric")
                                                                     .cast(pl.String)))
    saved = I.PROBE_STRIDE, I.DENSE
    I.DENSE = 1                      # never give up for short series (the test's are short)
    try:
        for stride in (1, 2, 3, 7, 128):
            I.PROBE_STRIDE = stride
            heads, first = I._probed_heads(frame["patient_id"], frame["metric"])
            assert np.array_equal(np.append(heads, frame.height), offsets), stride
            assert np.array_equal(np.cumsum(first) - 1, codes), stride
            index = I.SeriesIndex.of(frame)
            assert np.array_equal(index.offsets, offsets)
            assert index.patient_ids.to_list() == ids
    finally:
        I.PROBE_STRIDE, I.DENSE = saved


def test_probed_heads_fall_back_on_nulls_and_other_types():
    from engine.ingest import index as I
    assert I._probed_heads(pl.Series(["a", None]), pl.Series(["x", "x"])) is None
    assert I._probed_heads(pl.Series([1.0, 2.0]), pl.Series(["x", "x"])) is None
    heads, first = I._probed_heads(pl.Series([1, 1, 2]), pl.Series(["x", "y", "y"]))
    assert heads.tolist() == [0, 1, 2] and first.tolist() == [True, False, True]


def test_probing_gives_up_on_short_series():
    """One-row series: a bisection per row would cost more than the row-by-row flags."""
    from engine.ingest import index as I
    n = 5000
    ids = pl.Series([f"p{i:05d}" for i in range(n)])
    assert I._probed_heads(ids, pl.Series(["spo2"] * n)) is None
    frame = pl.DataFrame({"patient_id": ids, "metric": ["spo2"] * n})
    assert np.array_equal(I.SeriesIndex.of(frame).offsets, np.arange(n + 1))
    long = pl.Series([f"p{i // 600:05d}" for i in range(n)])
    heads, first = I._probed_heads(long, pl.Series(["spo2"] * n))
    assert heads.tolist() == list(range(0, n, 600)) and first.all()
