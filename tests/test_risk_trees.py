"""The risk model's compiled prediction (engine/risk/trees.py) against scikit-learn's
``predict_proba``, its reference: the same bits, not close values, on the bundled model and on
small models trained here with missing values (both NaN branches, splits on NaN), for feature
matrices with NaN, infinities, values exactly on (and one ulp beside) the thresholds, one row
and none."""
from __future__ import annotations

import functools
import types

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.risk import features as F
from engine.risk import trees
from engine.risk.model import RiskModel, fitted_model

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KINDS = ("nan", "inf", "-inf", "on", "above", "below", "value", "zero", "huge")


def _thresholds(hgbs, n_features: int) -> list[np.ndarray]:
    """Per column, the finite thresholds of every split on it (scikit-learn's nodes)."""
    out = [[] for _ in range(n_features)]
    for hgb in hgbs:
        for row in hgb._predictors:
            for p in row:
                inner = p.nodes[p.nodes["is_leaf"] == 0]
                for f, t in zip(inner["feature_idx"], inner["num_threshold"]):
                    if np.isfinite(t):
                        out[int(f)].append(float(t))
    return [np.unique(np.asarray(t, dtype=np.float64)) for t in out]


def _cell(kind: str, thresholds: np.ndarray, rng: np.random.Generator) -> float:
    t = thresholds[rng.integers(thresholds.size)] if thresholds.size else 0.0
    if kind == "nan":
        return np.nan
    if kind == "inf":
        return np.inf
    if kind == "-inf":
        return -np.inf
    if kind == "on":
        return t
    if kind == "above":
        return np.nextafter(t, np.inf)
    if kind == "below":
        return np.nextafter(t, -np.inf)
    if kind == "zero":
        return -0.0 if rng.random() < 0.5 else 0.0
    if kind == "huge":
        return float(rng.choice([1e300, -1e300, 5e-324, -5e-324, np.finfo(float).max]))
    lo, hi = (thresholds.min(), thresholds.max()) if thresholds.size else (-1.0, 1.0)
    span = max(hi - lo, 1.0)
    return float(rng.uniform(lo - span, hi + span))


@st.composite
def matrices(draw, thresholds: list[np.ndarray], max_rows: int = 40):
    """A float64 matrix (rows × len(thresholds)): each cell of a drawn kind (NaN, ±inf, a
    threshold of its column, one ulp above or below one, ±0, extreme magnitudes, a value in
    the thresholds' range), by drawn weights; then a few cells set explicitly."""
    n = draw(st.one_of(st.just(1), st.integers(0, max_rows)))
    weights = np.asarray(draw(st.lists(st.integers(0, 4), min_size=len(KINDS),
                                       max_size=len(KINDS))), dtype=float)
    weights = weights / weights.sum() if weights.sum() else np.full(len(KINDS), 1 / len(KINDS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    nf = len(thresholds)
    kinds = rng.choice(len(KINDS), size=(n, nf), p=weights)
    X = np.empty((n, nf))
    for i in range(n):
        for j in range(nf):
            X[i, j] = _cell(KINDS[kinds[i, j]], thresholds[j], rng)
    if n:
        for i, j, kind in draw(st.lists(st.tuples(st.integers(0, n - 1),
                                                  st.integers(0, nf - 1),
                                                  st.sampled_from(KINDS)), max_size=5)):
            X[i, j] = _cell(kind, thresholds[j], rng)
    layout = draw(st.sampled_from(["F", "C"]))         # polars gives F; numpy callers C
    return np.asfortranarray(X) if layout == "F" else np.ascontiguousarray(X)


def _reference(model, X: np.ndarray) -> np.ndarray:
    if X.shape[0] == 0:                  # scikit-learn refuses an empty matrix
        return np.zeros(0)
    return model.predict_proba(X)[:, 1]


# -- the bundled model ------------------------------------------------------------------------

@functools.cache
def _bundled() -> RiskModel:
    return RiskModel.load("default")


@pytest.fixture(scope="module")
def bundled():
    return _bundled()


# strategies built on first use: collecting this module loads and trains nothing
BUNDLED_MATRICES = st.deferred(lambda: matrices(
    _thresholds([fitted_model(_bundled().model)], len(_bundled().features))))


def test_the_bundled_model_is_compiled(bundled):
    fast = bundled._compiled()
    assert isinstance(fast, trees.Calibrated) and len(fast.parts) == 1
    forest = fast.parts[0][0]
    hgb = fitted_model(bundled.model)
    assert forest.roots.size == sum(len(row) for row in hgb._predictors)
    assert forest.value.size == sum(p.nodes.size for row in hgb._predictors for p in row)


@PROPERTY
@given(X=BUNDLED_MATRICES)
def test_bundled_model_probabilities_are_sklearns_bit_for_bit(X):
    model = _bundled()
    fast = model._compiled()
    ref = _reference(model.model, X)
    got = fast.predict(X)
    assert got.dtype == np.float64 and got.shape == (X.shape[0],)
    assert np.array_equal(got, ref)
    # and through RiskModel.predict, from a feature frame (NaN stays NaN, null becomes NaN)
    frame = pl.DataFrame(X, schema=list(F.feature_names()), orient="row")
    assert np.array_equal(model.predict(frame), ref)
    assert np.array_equal(model.predict_reference(frame), ref)
    if X.shape[0]:
        raw = fast.parts[0][0].raw(X)[:, 0]
        assert np.array_equal(raw, fitted_model(model.model).decision_function(X))


def test_nulls_and_an_empty_frame(bundled):
    names = list(F.feature_names())
    empty = pl.DataFrame(schema={n: pl.Float64 for n in names})
    assert bundled.predict(empty).shape == (0,)
    assert bundled._compiled().predict(np.zeros((0, len(names)))).shape == (0,)
    nulls = pl.DataFrame({n: [None, 1.0] for n in names}, schema={n: pl.Float64 for n in names})
    assert np.array_equal(bundled.predict(nulls),
                          bundled.model.predict_proba(F.matrix(nulls))[:, 1])


def test_a_read_only_matrix(bundled):
    X = np.asfortranarray(np.tile(np.linspace(-5, 200, len(bundled.features)), (7, 1)))
    X[::2, ::3] = np.nan
    X.flags.writeable = False
    assert np.array_equal(bundled._compiled().predict(X), bundled.model.predict_proba(X)[:, 1])


# -- small models trained here: missing values in training, both NaN branches -----------------

N_FEATURES = 5


def _training(n=600, seed=0):
    """Column 0 missing often and its missingness predictive (a split on NaN: threshold +inf);
    column 1 missing sometimes (missing_go_to_left learned); columns 2-4 never missing in
    training (NaN at prediction goes to the larger child); column 3 few distinct values."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 3] = rng.integers(0, 4, n)
    miss0 = rng.random(n) < 0.35
    miss1 = rng.random(n) < 0.15
    logit = 1.5 * miss0 + X[:, 1] - 0.8 * X[:, 2] + 0.5 * X[:, 3] + 0.3 * rng.normal(size=n)
    y = (logit > np.quantile(logit, 0.65)).astype(int)       # unbalanced: a baseline not 0
    X[miss0, 0] = np.nan
    X[miss1, 1] = np.nan
    return X, y


@pytest.fixture(scope="module")
def small_models():
    return _small_models()


@functools.cache
def _small_models():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator

    X, y = _training()
    hgb = HistGradientBoostingClassifier(max_iter=40, max_depth=4, learning_rate=0.2,
                                         random_state=0).fit(X, y)
    deep = HistGradientBoostingClassifier(max_iter=15, max_leaf_nodes=40, min_samples_leaf=5,
                                          random_state=1).fit(X, y)
    multi = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(
        X, (X[:, 3] % 3).astype(int))
    return {
        "sigmoid": CalibratedClassifierCV(FrozenEstimator(hgb), method="sigmoid").fit(X, y),
        "isotonic": CalibratedClassifierCV(FrozenEstimator(hgb), method="isotonic").fit(X, y),
        "deep": CalibratedClassifierCV(FrozenEstimator(deep), method="sigmoid").fit(X, y),
        # cross-validated: three calibrated classifiers, each its own trees, averaged
        "cv": CalibratedClassifierCV(HistGradientBoostingClassifier(max_iter=20, random_state=0),
                                     method="sigmoid", cv=3).fit(X, y),
        "hgb": hgb, "multi": multi,
    }


SMALL_MATRICES = st.deferred(lambda: matrices(_thresholds(
    [_small_models()["hgb"], fitted_model(_small_models()["deep"])], N_FEATURES)))


def test_the_small_models_take_both_nan_branches_and_split_on_nan(small_models):
    nodes = np.concatenate([p.nodes for row in small_models["hgb"]._predictors for p in row])
    inner = nodes[nodes["is_leaf"] == 0]
    assert set(inner["missing_go_to_left"].tolist()) == {0, 1}
    assert np.isinf(inner["num_threshold"]).any()                    # a split on NaN
    never_missing = np.isin(inner["feature_idx"], [2, 3, 4])
    assert set(inner["missing_go_to_left"][never_missing].tolist()) == {0, 1}
    assert len(small_models["cv"].calibrated_classifiers_) == 3
    for name in ("sigmoid", "isotonic", "deep", "cv"):
        assert trees.compile_model(small_models[name]) is not None, name


@PROPERTY
@given(X=SMALL_MATRICES, name=st.sampled_from(["sigmoid", "isotonic", "deep", "cv"]))
def test_small_model_probabilities_are_sklearns_bit_for_bit(X, name):
    model = _small_models()[name]
    fast = trees.compile_model(model)
    assert np.array_equal(fast.predict(X), _reference(model, X))


@PROPERTY
@given(X=SMALL_MATRICES)
def test_raw_predictions_are_sklearns_bit_for_bit(X):
    for name in ("hgb", "multi"):           # multi: three trees an iteration, one per class
        hgb = _small_models()[name]
        raw = trees.compile_forest(hgb).raw(X)
        assert raw.shape == (X.shape[0], hgb.n_trees_per_iteration_)
        if X.shape[0]:
            assert np.array_equal(raw, hgb._raw_predict(X))


def test_the_training_rows_themselves(small_models):
    X, _ = _training()
    for name in ("sigmoid", "isotonic", "deep", "cv"):
        model = small_models[name]
        assert np.array_equal(trees.compile_model(model).predict(X), model.predict_proba(X)[:, 1])


# -- what is not reproduced falls back to scikit-learn ----------------------------------------

def test_models_it_does_not_reproduce_fall_back_to_sklearn(small_models, monkeypatch):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression

    X, y = _training()
    X = np.nan_to_num(X)
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features=[3]).fit(X, y)
    assert trees.compile_forest(categorical) is None
    cat_cal = CalibratedClassifierCV(FrozenEstimator(categorical), method="sigmoid").fit(X, y)
    logistic = CalibratedClassifierCV(FrozenEstimator(LogisticRegression().fit(X, y)),
                                      method="sigmoid").fit(X, y)
    temperature = CalibratedClassifierCV(FrozenEstimator(small_models["hgb"]),
                                         method="temperature").fit(X, y)
    for model in (cat_cal, logistic, temperature, small_models["hgb"]):
        assert trees.compile_model(model) is None
    names = [f"f{i}" for i in range(N_FEATURES)]
    rm = RiskModel(types.SimpleNamespace(model=logistic, card={}, features=names))
    assert rm._compiled() is None
    # RiskModel.predict reads the engine's features (F.matrix): these models take five columns
    monkeypatch.setattr(F, "matrix", lambda frame: frame.to_numpy())
    frame = pl.DataFrame(X[:20], schema=names, orient="row")
    Xf = frame.to_numpy()           # column-major: a linear model's BLAS sums depend on it
    assert np.array_equal(rm.predict(frame), logistic.predict_proba(Xf)[:, 1])
    rm.model = small_models["sigmoid"]              # a model replaced: compiled afresh
    assert rm._compiled() is not None
    assert np.array_equal(rm.predict(frame), rm.model.predict_proba(Xf)[:, 1])


# -- kernel conventions: cached, warmed up with a run's argument types -------------------------

def test_the_kernel_is_warmed_up_with_the_types_a_run_passes(bundled):
    from engine import warmup

    assert trees._forest_raw in warmup._dispatchers()
    trees.warmup()
    frame = pl.DataFrame(np.asfortranarray(np.ones((3, len(bundled.features)))),
                         schema=list(F.feature_names()), orient="row")
    bundled.predict(frame)
    bundled._compiled().predict(np.ones((2, len(bundled.features))))   # C order: transposed
    assert len(trees._forest_raw.signatures) == 1
    from engine.risk import treeshap
    assert treeshap._shap_values in warmup._dispatchers()
    bundled.contributions(frame)
    assert len(treeshap._shap_values.signatures) == 1


# -- SHAP values (engine.risk.treeshap) against shap's tree explainer ---------------------------
@functools.cache
def _explainer(name):
    import shap
    return shap.TreeExplainer(_shap_model(name))


def _shap_model(name):
    return _small_models()["hgb"] if name == "hgb" else fitted_model(_small_models()["deep"])


@PROPERTY
@given(X=SMALL_MATRICES, name=st.sampled_from(["hgb", "deep"]))
def test_shap_values_are_shaps_bit_for_bit(X, name):
    """Depth-4 trees and 40-leaf trees splitting again on a feature already on the path (the
    path is unwound), missing values both ways, splits on NaN, thresholds hit exactly."""
    from engine.risk import treeshap

    forest = trees.compile_forest(_shap_model(name))
    got = treeshap.shap_values(forest, X)
    assert got.shape == (X.shape[0], N_FEATURES)
    if X.shape[0]:
        want = np.asarray(_explainer(name).shap_values(X))
        assert np.array_equal(got, want)


def _splits_again(nodes, i=0, seen=frozenset()) -> bool:
    """Does a path from node ``i`` split on a feature already split on above it?"""
    if nodes[i]["is_leaf"]:
        return False
    f = int(nodes[i]["feature_idx"])
    return (f in seen or _splits_again(nodes, int(nodes[i]["left"]), seen | {f})
            or _splits_again(nodes, int(nodes[i]["right"]), seen | {f}))


def test_the_deep_trees_split_again_on_a_feature_of_their_path(small_models):
    """So the unwinding of a path element is exercised by the property test above."""
    assert any(_splits_again(p[0].nodes)
               for p in fitted_model(small_models["deep"])._predictors)


def test_the_bundled_models_contributions_are_shaps(bundled):
    rng = np.random.default_rng(3)
    names = F.feature_names()
    X = rng.normal(0.0, 3.0, (300, len(names)))
    X[rng.random(X.shape) < 0.3] = np.nan
    frame = pl.DataFrame({n: X[:, j] for j, n in enumerate(names)})
    got = bundled.contributions(frame)
    assert np.array_equal(got, bundled.contributions_reference(frame))
    assert bundled.contributions(frame.head(0)).shape == (0, len(names))


def test_a_forest_of_several_classes_is_left_to_shap(small_models):
    from engine.risk import treeshap

    with pytest.raises(ValueError, match="one per class"):
        treeshap.shap_values(trees.compile_forest(small_models["multi"]), np.zeros((1, 5)))


def test_predictions_in_blocks_of_rows_are_those_of_one_matrix(bundled, monkeypatch):
    from engine.risk import model as M
    frame = pl.DataFrame(np.random.default_rng(4).normal(0.0, 3.0, (1000, len(bundled.features))),
                         schema=list(F.feature_names()), orient="row")
    whole = bundled._compiled().predict(F.matrix(frame))
    monkeypatch.setattr(M, "PREDICT_BLOCK_ROWS", 300)         # 300, 300, 300, 100
    assert np.array_equal(bundled.predict(frame), whole)
