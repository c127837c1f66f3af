"""The risk model's probabilities in one compiled pass, bit for bit scikit-learn's.

scikit-learn predicts a ``HistGradientBoostingClassifier`` one tree at a time: 150 calls, each a
parallel pass over every row that adds one tree's leaf values to the raw predictions. On the
risk stage's feature frame that is most of the stage. :func:`compile_model` flattens every tree
of a fitted model into contiguous node arrays once, at model load, and :meth:`Forest.raw` walks
all trees of each row in one kernel (:func:`_forest_raw`, parallel over rows), adding the leaf
values to the baseline in scikit-learn's order — baseline, then tree 1, tree 2, … — so the
float64 sums, and everything computed from them, are the same bits.

The walk is ``_predict_one_from_raw_data`` of scikit-learn's ``_predictor.pyx``: a NaN goes
to the child ``missing_go_to_left`` names (for a feature without missing values in training,
fitting set it to the child with more samples; a split "on NaN" has the threshold ``+inf``, so
every number goes left), any other value left when ``value <= num_threshold``. Categorical
splits are not reproduced: a model with one falls back to scikit-learn (veille's artifacts
never hold one, :mod:`engine.risk.artifact`).

:class:`Calibrated` then repeats ``CalibratedClassifierCV.predict_proba`` for the positive
class with scikit-learn's own calibrator objects (``calibrator.predict(raw)``), the same
operations in the same order (each calibrated classifier's probability added to zeros, the sum
divided by their count). :func:`compile_model` returns None for any model shape it does not
reproduce exactly; the caller then uses ``predict_proba`` — which stays the reference the tests
compare this module with, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ..config import JIT_PARALLEL


#: rows a kernel iteration walks together, level by level: independent walks the processor
#: overlaps, and the first split of a tree reads one column for all of them
BLOCK = 128


@njit(**JIT_PARALLEL)
def _forest_raw(cols, feature, threshold, missing_left, child, value, roots, depth, baseline,
                out):
    """``out[i, k]`` = ``baseline[k]`` plus, in order, the leaf of row ``i`` in every tree
    ``t`` with ``t % K == k`` (K = ``baseline.size``).

    ``cols`` is the input by feature (``cols[f, i]``). The trees' nodes are flat (int32
    indices): tree ``t`` starts at node ``roots[t]``, a split's left child is ``child[c]`` and
    its right one ``child[c] + 1``; a leaf is its own left child (threshold +inf, NaN left), so
    ``depth[t]`` steps from the root (its deepest leaf's depth) end at the row's leaf on every
    path, without a branch on the data."""
    n = cols.shape[1]
    n_trees = roots.size
    n_out = baseline.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo = b * BLOCK
        m = min(BLOCK, n - lo)
        node = np.empty(m, np.int32)
        for j in range(m):
            for k in range(n_out):
                out[lo + j, k] = 0.0 + baseline[k]     # scikit-learn: zeros, += baseline
        for t in range(n_trees):
            root = roots[t]
            for j in range(m):
                node[j] = root
            for _ in range(depth[t]):
                for j in range(m):
                    c = node[j]
                    x = cols[feature[c], lo + j]
                    # _predictor.pyx: NaN by missing_go_to_left, else left when x <= threshold
                    go_left = (x <= threshold[c]) | (np.isnan(x) & (missing_left[c] != 0))
                    node[j] = child[c] + np.int32(1 - go_left)
            k = t % n_out
            for j in range(m):
                out[lo + j, k] += value[node[j]]


@dataclass(frozen=True, eq=False)
class Forest:
    """Every tree of a fitted ``HistGradientBoostingClassifier``, flattened (see
    :func:`_forest_raw` for the layout)."""

    n_features: int
    feature: np.ndarray       # int32
    threshold: np.ndarray     # float64
    missing_left: np.ndarray  # uint8
    child: np.ndarray         # int32: the left child, the right one after it; a leaf: itself
    value: np.ndarray         # float64
    roots: np.ndarray         # int32
    depth: np.ndarray         # int64, per tree
    baseline: np.ndarray      # float64, one per tree of an iteration
    cover: np.ndarray | None = None   # float64: the training samples that reached each node

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The raw predictions (``n_samples × trees per iteration``) of ``X`` (float64,
        ``n_samples × n_features``): ``_raw_predict``'s, bit for bit."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X has shape {X.shape}; the model takes {self.n_features} columns")
        out = np.empty((X.shape[0], self.baseline.size), dtype=np.float64)
        if X.shape[0]:
            # by feature, contiguous: free for the column-major matrix polars gives (a
            # read-only one is copied: numba would compile another kernel for it)
            cols = np.ascontiguousarray(X.T)
            if not cols.flags.writeable:
                cols = cols.copy()
            _forest_raw(cols, self.feature, self.threshold, self.missing_left, self.child,
                        self.value, self.roots, self.depth, self.baseline, out)
        return out


def _unwrap(estimator):
    """The gradient-boosting classifier a calibrated classifier reads, or None."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator

    if type(estimator) is FrozenEstimator:
        estimator = estimator.estimator
    return estimator if type(estimator) is HistGradientBoostingClassifier else None


def compile_forest(hgb) -> Forest | None:
    """The flattened trees of a fitted ``HistGradientBoostingClassifier``; None when the model
    has what :func:`_forest_raw` does not reproduce (a categorical split, a column
    preprocessor) or a tree that is not well formed (every child in the tree, after its
    parent, and every node reached once)."""
    if getattr(hgb, "_preprocessor", None) is not None:
        return None
    if getattr(hgb, "is_categorical_", None) is not None:
        return None
    predictors = getattr(hgb, "_predictors", None)
    baseline = np.asarray(getattr(hgb, "_baseline_prediction", np.zeros(0)))
    n_features = getattr(hgb, "n_features_in_", None)
    k = getattr(hgb, "n_trees_per_iteration_", None)
    if (not isinstance(predictors, list) or type(n_features) is not int or type(k) is not int
            or k < 1 or baseline.dtype != np.float64 or baseline.size != k):
        return None
    trees = []
    for row in predictors:
        if not isinstance(row, list) or len(row) != k:
            return None
        trees += [p.nodes for p in row]
    feature, threshold, missing_left, child, value, roots, depths = [], [], [], [], [], [], []
    cover = []
    for nodes in trees:
        order = _breadth_first(nodes, n_features)
        if order is None:
            return None
        placed, depth = order
        start = len(value)
        roots.append(start)
        depths.append(depth)
        new = {old: start + i for i, old in enumerate(placed)}
        for old in placed:
            node = nodes[old]
            if node["is_leaf"]:
                feature.append(0)
                threshold.append(np.inf)
                missing_left.append(1)
                child.append(new[old])
            else:
                feature.append(int(node["feature_idx"]))
                threshold.append(node["num_threshold"])
                missing_left.append(1 if node["missing_go_to_left"] else 0)
                child.append(new[int(node["left"])])
            value.append(node["value"])
            cover.append(float(node["count"]))
    if len(value) >= np.iinfo(np.int32).max:
        return None
    return Forest(n_features=n_features,
                  feature=np.asarray(feature, dtype=np.int32),
                  threshold=np.asarray(threshold, dtype=np.float64),
                  missing_left=np.asarray(missing_left, dtype=np.uint8),
                  child=np.asarray(child, dtype=np.int32),
                  value=np.asarray(value, dtype=np.float64),
                  roots=np.asarray(roots, dtype=np.int32),
                  depth=np.asarray(depths, dtype=np.int64),
                  baseline=np.ascontiguousarray(baseline.reshape(-1), dtype=np.float64),
                  cover=np.asarray(cover, dtype=np.float64))


def _breadth_first(nodes, n_features) -> tuple[list[int], int] | None:
    """The nodes of a tree in the order :func:`_forest_raw` stores them (root first, each
    split's two children side by side) and the depth of its deepest leaf; None for a tree
    that is not well formed or has a categorical split."""
    n = nodes.size
    if n == 0:
        return None
    is_leaf, cat = nodes["is_leaf"], nodes["is_categorical"]
    left, right, feat = nodes["left"], nodes["right"], nodes["feature_idx"]
    placed, seen, depth = [0], {0}, 0
    level = [0]
    while level:
        nxt = []
        for c in level:
            if is_leaf[c]:
                continue
            if cat[c] or not 0 <= feat[c] < n_features:
                return None
            for kid in (int(left[c]), int(right[c])):
                if not c < kid < n or kid in seen:
                    return None
                seen.add(kid)
                placed.append(kid)
                nxt.append(kid)
        if nxt:
            depth += 1
        level = nxt
    return placed, depth


@dataclass(frozen=True, eq=False)
class Calibrated:
    """A binary sigmoid or isotonic ``CalibratedClassifierCV`` over gradient-boosting
    classifiers: per calibrated classifier, its trees and its calibrator (scikit-learn's
    object)."""

    parts: tuple[tuple[Forest, object], ...]

    @property
    def n_features(self) -> int:
        return self.parts[0][0].n_features

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The calibrated probability of the positive class: ``predict_proba(X)[:, 1]``, bit
        for bit."""
        n = X.shape[0]
        mean = np.zeros(n)
        if n == 0:                  # scikit-learn refuses no rows; RiskModel.predict gives none
            return mean
        for forest, calibrator in self.parts:
            # _CalibratedClassifier: decision_function (binary: one column), calibrated
            proba = np.zeros(n)
            proba[:] = calibrator.predict(forest.raw(X).ravel())
            mean += proba
        mean /= len(self.parts)
        return mean


def compile_model(model) -> Calibrated | None:
    """:class:`Calibrated` for a fitted model whose ``predict_proba`` it reproduces exactly
    (binary classes, sigmoid or isotonic calibration, one calibrator per calibrated classifier
    over a ``HistGradientBoostingClassifier``, bare or frozen, each compiled by
    :func:`compile_forest`); None for anything else."""
    from sklearn.calibration import CalibratedClassifierCV, _CalibratedClassifier

    if type(model) is not CalibratedClassifierCV:
        return None
    classes = getattr(model, "classes_", None)
    ccs = getattr(model, "calibrated_classifiers_", None)
    if classes is None or len(classes) != 2 or not ccs:
        return None
    parts = []
    for cc in ccs:
        if type(cc) is not _CalibratedClassifier or cc.method not in ("sigmoid", "isotonic"):
            return None
        hgb = _unwrap(cc.estimator)
        if (hgb is None or len(cc.calibrators) != 1 or len(cc.classes) != 2
                or not np.array_equal(np.asarray(hgb.classes_), np.asarray(cc.classes))
                or hgb.n_trees_per_iteration_ != 1):
            return None
        forest = compile_forest(hgb)
        if forest is None:
            return None
        parts.append((forest, cc.calibrators[0]))
    if len({f.n_features for f, _ in parts}) != 1:
        return None
    return Calibrated(tuple(parts))


def warmup() -> None:
    """Compile (or load from the on-disk cache) :func:`_forest_raw` and the SHAP values'
    kernel (:mod:`.treeshap`) with a run's argument types, on a one-split tree: the types do
    not depend on the model."""
    from .treeshap import shap_values

    forest = Forest(n_features=1, feature=np.zeros(3, np.int32),
                    threshold=np.array([0.5, np.inf, np.inf]), missing_left=np.ones(3, np.uint8),
                    child=np.array([1, 1, 2], np.int32), value=np.array([0.0, -1.0, 1.0]),
                    roots=np.zeros(1, np.int32), depth=np.ones(1, np.int64),
                    baseline=np.zeros(1), cover=np.array([2.0, 1.0, 1.0]))
    # a column-major matrix, as polars gives: transposed, it is the C-contiguous input
    X = np.asfortranarray(np.array([[0.0], [1.0], [np.nan]]))
    forest.raw(X)
    shap_values(forest, X)
